//! What the load bench's servers share: the `--port` argument and the
//! first line the bench reads (`listening on http://ADDR`).

use std::net::SocketAddr;

/// The value of `--port N`, or `default`.
pub(crate) fn port(default: u16) -> u16 {
    let mut args = std::env::args().skip_while(|a| a != "--port").skip(1);
    args.next().and_then(|p| p.parse().ok()).unwrap_or(default)
}

/// Prints `listening on http://ADDR` for each bound address.
pub(crate) fn announce(addrs: &[SocketAddr]) {
    for addr in addrs {
        println!("listening on http://{addr}");
    }
}

/// Moves where this worker thread's later allocations fall in their pages
/// by `BENCH_HEAP_PHASE` bytes (nothing when unset), once per thread: call
/// it first thing in the `App` factory, which each worker runs on its own
/// thread before it takes a connection.
///
/// An idle connection writes only the first ~200 bytes of each of
/// actix-http's two 8 KiB buffers, so whether a buffer's inner page counts
/// in RSS depends on where the buffer starts in its page, and that on
/// everything the worker allocated before. The load bench's idle scenario
/// (`LOAD_HEAP_PHASES=1`) gives each round another phase, so that its mean
/// is over where the buffers fall rather than one arbitrary place
/// (benches/README.md, "Idle memory over heap phases").
pub(crate) fn shift_heap() {
    thread_local!(static SHIFTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let Some(phase) = std::env::var("BENCH_HEAP_PHASE").ok().and_then(|p| p.parse::<usize>().ok()) else {
        return;
    };
    if SHIFTED.replace(true) {
        return;
    }
    // 64 KiB more than the phase: too large for any free chunk at start-up,
    // so glibc carves it from the top of the thread's heap, below the
    // mmap threshold (128 KiB), and everything after it moves by the
    // block's chunk (the phase, 64 KiB and glibc's 16 bytes): from one
    // round to the next, by the difference of their phases within a page.
    // Never written, so never resident.
    let block = Vec::<u8>::with_capacity((64 << 10) + phase);
    std::mem::forget(std::hint::black_box(block));
}
