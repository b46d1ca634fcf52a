#!/usr/bin/env python3
"""Which pages of each connection's 8 KiB buffers a server has written.

Usage: buffer_pages.py PID   (as root, or as the server's user with ptrace
rights; glibc malloc, x86-64 Linux)

Finds the process's largest anonymous read-write mapping (with one
actix-web worker, the worker's malloc arena: one 64 MiB heap of it, about
3,400 idle WebSocket sessions; past that, glibc adds heaps and this counts
only the largest), reads which of its pages are
resident from /proc/PID/pagemap (first: reading the memory would fault
the pages in), walks glibc's chunks through it and counts, for the
8,208-byte chunks (actix-http's two 8 KiB buffers per connection), the
pages that lie wholly inside a chunk and whether they are resident. A
written page costs RSS; an untouched one does not. See benches/README.md,
"Idle memory".
"""
import collections
import struct
import sys

PAGE = 4096
BUFFER_CHUNK = 8208


def largest_anonymous_rw(pid):
    best = None
    for line in open(f"/proc/{pid}/maps"):
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if fields[1].startswith("rw") and len(fields) < 6:
            if best is None or end - start > best[1] - best[0]:
                best = (start, end)
    return best


def chunk_size(data, at):
    return struct.unpack_from("<Q", data, at + 8)[0] & ~7


def walk_from(data, at):
    count = 0
    while at + 16 <= len(data):
        size = chunk_size(data, at)
        if size < 32 or at + size > len(data):
            break
        at += size
        count += 1
    return count, at


def main():
    pid = int(sys.argv[1])
    start, end = largest_anonymous_rw(pid)
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        pagemap.seek(start // PAGE * 8)
        raw = pagemap.read((end - start) // PAGE * 8)
    resident = [(struct.unpack_from("<Q", raw, i * 8)[0] >> 63) & 1 for i in range(len(raw) // 8)]
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(start)
        data = mem.read(end - start)
    # The first chunk follows the heap's header and the arena's state: take
    # the offset from which the walk goes furthest.
    (chunks, stop), first = max((walk_from(data, at), at) for at in range(0x20, 0x1000, 16))
    by_size = collections.defaultdict(lambda: [0, 0, 0])
    # Where each buffer starts in its page, with how many of those have
    # their inner page written; and the bytes from one buffer pair to the
    # next (a connection's allocations), by how often.
    offsets = collections.defaultdict(lambda: [0, 0])
    strides = collections.Counter()
    last_buffer = pair = None
    second = False
    at = first
    while at < stop:
        size = chunk_size(data, at)
        user_start, user_end = start + at + 16, start + at + size
        pages = range((user_start + PAGE - 1) // PAGE, user_end // PAGE)
        row = by_size[size]
        row[0] += 1
        row[1] += len(pages)
        written = sum(resident[page - start // PAGE] for page in pages)
        row[2] += written
        if size == BUFFER_CHUNK:
            offset = offsets[user_start % PAGE]
            offset[0] += 1
            offset[1] += bool(written)
            if last_buffer is not None and at - last_buffer == BUFFER_CHUNK and not second:
                # A connection's second buffer, right after its first.
                second = True
            else:
                if pair is not None:
                    strides[at - pair] += 1
                pair, second = at, False
            last_buffer = at
        at += size
    print(f"mapping {start:#x}-{end:#x}: {chunks} chunks, {sum(resident)} of {len(resident)} pages resident")
    count, inner, written = by_size.get(BUFFER_CHUNK, [0, 0, 0])
    print(f"8 KiB buffers: {count}, pages wholly inside them: {inner}, of which written: {written}")
    print(f"they start at {len(offsets)} offsets in a page; those with an inner page written (offset: written of all):")
    print("  " + (", ".join(f"{o}: {w} of {n}" for o, (n, w) in sorted(offsets.items()) if w) or "none"))
    common = ", ".join(f"{s} bytes ({s % PAGE} past whole pages) x{n}" for s, n in strides.most_common(3))
    print(f"from one connection's first buffer to the next's, most often: {common}")


if __name__ == "__main__":
    main()
