//! Prints the sizes of the futures a proxied request runs in (issue 22: every byte of them is
//! copied when hyper takes a request's future, when a future is boxed, and at `.await`s).
//!
//! `cargo run --release --example future_sizes`: release sizes are what counts (a debug
//! build's futures are larger).

fn main() {
    for (what, bytes) in cutover::server::future_sizes() {
        println!("{bytes:>6}  {what}");
    }
}
