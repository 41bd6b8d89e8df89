//! Ports for servers a test starts as a separate process (etcd, Prometheus, the binary).
//!
//! A port found by binding `127.0.0.1:0` and letting go is in the kernel's ephemeral range, so
//! the next outgoing connection anywhere on the machine (a storefront call, etcd's own, another
//! test's) may be given it before the process binds it: "address already in use", a flaky
//! test. These ports come from below that range, where the kernel never hands out a port on its
//! own; only another test's draw could meet it, one chance in tens of thousands, and the bind
//! check here catches a port that is already held.
//!
//! Standalone (no other support module), so suites without `mod support` include it by path.

use std::net::TcpListener;

/// A port on 127.0.0.1 that nothing holds now and the kernel will not give an outgoing socket.
pub fn free_port() -> u16 {
    let lowest_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let below = lowest_ephemeral.max(12_000);
    for _ in 0..100 {
        let port = fastrand::u16(10_000..below);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 10000 and {below} after 100 tries");
}
