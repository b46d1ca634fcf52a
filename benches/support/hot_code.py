#!/usr/bin/env python3
"""The code an operation runs, in 64-byte lines: a first-level instruction
cache holds 512 of them (32 KiB), and a path that runs more misses it at
every turn (benches/README.md, "Instruction cache").

Usage: hot_code.py BASE FULL OPS [TOP]

BASE and FULL are callgrind dumps taken with `--dump-instr=yes` of one
server, FULL with OPS more operations than BASE (profile_echo.sh makes
them with CGOPTS=--dump-instr=yes: `ours.0` and `ours.200`, say, and OPS =
sessions x rounds). An instruction is hot when FULL ran it at least 0.9
times per operation more than BASE. Prints the hot lines in all and how
they fall in the I1's sets, then the TOP functions (default 30) and this
crate's source files by hot lines.
"""
import collections
import re
import sys


def load(path):
    """Cost per instruction address, and its function and source file."""
    cost, where = collections.Counter(), {}
    names, files = {}, {}
    fn = fl = fi = None
    addr = line = 0
    call = False
    position = re.compile(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+(\d+|[+-]\d+|\*)\s+(\d+)")
    for raw in open(path):
        s = raw.strip()
        named = re.match(r"^(fn|cfn|fl|fi|fe|cfi|cfl)=\((\d+)\)(?: (.*))?$", s)
        if named:
            kind, key, name = named.groups()
            table = names if kind in ("fn", "cfn") else files
            if name:
                table[key] = name
            if kind == "fn":
                fn, fi = names.get(key), fl
            elif kind == "fl":
                fl = fi = files.get(key)
            elif kind in ("fi", "fe"):
                fi = files.get(key)
            continue
        if s.startswith("calls="):
            call = True
            continue
        m = position.match(s)
        if not m:
            continue
        a, l, c = m.groups()
        addr = int(a, 16) if a.startswith("0x") else addr + int(a) if a != "*" else addr
        line = int(l) if l.isdigit() else line + int(l) if l != "*" else line
        if call:  # the inclusive cost of a call: not this instruction's
            call = False
            continue
        cost[addr] += int(c)
        where[addr] = (fn or "?", fi or "?")
    return cost, where


base, _ = load(sys.argv[1])
full, where = load(sys.argv[2])
ops = int(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 30
hot = [a for a, c in full.items() if c - base.get(a, 0) >= 0.9 * ops]
lines = {a >> 6 for a in hot}
print(f"hot: {len(hot)} instructions in {len(lines)} lines of 64 bytes ({len(lines) * 64 / 1024:.1f} KiB)")
# A 32 KiB, 8-way I1 has 64 sets of 8 lines, picked by address bits 6-11
# (kept by ASLR, which moves code by whole pages): a set that more hot
# lines fall in than it has ways loses some at every turn.
per_set = collections.Counter(line & 63 for line in lines)
over = [n for n in per_set.values() if n > 8]
print(f"I1 sets with more than 8 hot lines: {len(over)} of 64, holding {sum(over)} lines (most in one: {max(per_set.values())})")
by_fn, by_file = collections.defaultdict(set), collections.defaultdict(set)
for a in hot:
    fn, file = where[a]
    by_fn[fn].add(a >> 6)
    if "/src/" in file and "/registry/" not in file and "/rustc/" not in file:
        by_file[file.split("/src/", 1)[1]].add(a >> 6)
for fn in sorted(by_fn, key=lambda f: -len(by_fn[f]))[:top]:
    print(f"{len(by_fn[fn]):5} {fn[:140]}")
print("this crate's files:")
for file in sorted(by_file, key=lambda f: -len(by_file[f])):
    print(f"{len(by_file[file]):5} src/{file}")
