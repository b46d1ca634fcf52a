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
