# Sends waiting in line for one session's turn (benches/README.md, "Sends
# waiting for one session"): N xhr_send requests wait for session A's send
# turn behind one whose body is held back, while session B sends COUNT
# messages to /broadcast (each reaches A's command queue, which A then
# drains). Prints the server's CPU (every thread, schedstat) over them.
#
#   python3 benches/support/send_line.py PORT N SERVER_PID COUNT
#
# against `sockjs_bench` (`cargo run --release --example sockjs_bench --
# --port PORT`), with `ulimit -n` above N.
import asyncio, os, sys, time, glob
port, n, pid, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def cpu_ns():
    t = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try: t += int(open(f).read().split()[0])
        except OSError: pass
    return t
async def post(path, body):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body); await w.drain()
    line = await r.readline(); w.close(); return line
async def open_session(sid):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"POST /broadcast/000/{sid}/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()); await w.drain()
    await r.readuntil(b"o\n"); w.close()
async def main():
    a, b = f"a{os.getpid()}", f"b{os.getpid()}"
    await open_session(a); await open_session(b)
    body = b'["x"]'
    hr, hw = await asyncio.open_connection("127.0.0.1", port)
    hw.write(f"POST /broadcast/000/{a}/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1]); await hw.drain()
    await asyncio.sleep(0.2)
    tasks = [asyncio.create_task(post(f"/broadcast/000/{a}/xhr_send", body)) for _ in range(n)]
    await asyncio.sleep(1.0 + n / 2000)
    c0, t0 = cpu_ns(), time.monotonic()
    for _ in range(count):
        await post(f"/broadcast/000/{b}/xhr_send", body)
    t1, c1 = time.monotonic(), cpu_ns()
    print(f"n={n} waiting: {count} broadcasts in {t1-t0:.2f} s, server CPU {(c1-c0)/1e6:.1f} ms ({(c1-c0)/1e3/count:.0f} us a broadcast)")
    hw.write(body[1:]); await hw.drain()
    await asyncio.gather(*tasks)
asyncio.run(main())
