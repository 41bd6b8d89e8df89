//! An error and its causes on one line, for logs, status answers and CLI messages.
//!
//! hyper, hyper-util and reqwest-style clients put the useful part in a source: "client error
//! (Connect)" says nothing until ": tcp connect error: Connection refused (os error 111)"
//! follows it. Every place that reports a library's error to a person uses this one function,
//! so the chain is joined the same way everywhere.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use std::error::Error;

/// `e`'s message followed by each source's, joined with `": "`.
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fetching https://old.example/sitemap.xml")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_on_the_line() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            chain(&e),
            "fetching https://old.example/sitemap.xml: connection refused"
        );
        let plain = std::io::Error::other("alone");
        assert_eq!(chain(&plain), "alone");
    }
}
