//! HTTP/1 on the wire, both directions: request heads parsed from shoppers, response heads
//! written to them, and the line writers the storefront client frames its requests with.
//!
//! Owns: the one list of framing and hop-by-hop header names ([`framing`]), byte scanning
//! ([`scan`]), header names parsed once per worker thread ([`names`]), head lines ([`wire`]),
//! the shopper-side head parser ([`head`]), the redirect writer ([`write`]) and the forwarded
//! response's head (`response_head`, hyper's framing rules). May import nothing of cutover's but
//! itself: it sits at the bottom of the layer order (see the crate doc).
//!
//! # How cutover defends against request smuggling
//! A request is framed exactly once, by one parser, and what cutover forwards is re-framed by
//! cutover rather than copied:
//! - **One parser per connection at a time, and never back.** Shopper connections are parsed by
//!   httparse here (the front, which answers redirects and forwards bodyless `GET`/`HEAD`) until
//!   the first request it does not take; from then on hyper parses the connection, and the front
//!   never sees it again ([`crate::fast_path`]). A request the front forwards has no body, so no
//!   body bytes are ever framed by the front: the next head starts where this one ended.
//! - **Ambiguous framing is refused, not repaired.** A head with `Transfer-Encoding` and
//!   `Content-Length`, an obfuscated or duplicated `Transfer-Encoding`, a signed or duplicated
//!   `Content-Length`, or an HTTP/1.0 request with `Transfer-Encoding` never takes the fast path
//!   ([`head`]'s framing check); hyper answers it with 400 or closes the connection. Proven by
//!   `tests/smuggling.rs::ambiguous_framing_never_smuggles_a_request`.
//! - **More than one `Host`** is a 400 (`tests/smuggling.rs::multiple_host_headers_are_rejected`).
//! - **Framing headers are never copied to a storefront.** The request to a storefront gets
//!   cutover's own `Content-Length` or `Transfer-Encoding: chunked` ([`crate::headers::outgoing`]
//!   drops the shopper's, [`crate::upstream::h1`] writes the framing), so what the storefront
//!   parses is what cutover parsed (`src/headers/outgoing/tests.rs`).
//! - **Hop-by-hop headers** (`Connection` and the headers it names, `Upgrade`, `TE`, `Trailer`,
//!   `Keep-Alive`, proxy headers) are removed both ways ([`crate::headers`]).
//! - **One list of names.** Body framing, hop-by-hop and request-control headers are listed
//!   once, in [`framing`]; the parser, the header policy and the shadow copies use it.
//! - **Response framing from a storefront** is checked by the client (`upstream/h1/framing.rs`):
//!   both `Content-Length` and `Transfer-Encoding`, or a `Transfer-Encoding` that does not end in
//!   `chunked`, is read to close rather than trusted (`src/upstream/h1/tests.rs`).
//! - **Responses the front writes** are framed by hyper's rules (`response_head`): the length the
//!   body is known to have, else chunked; none for `HEAD`, 204 and 304. A body that ends short
//!   of its length, or runs past it, resets the connection instead of letting the shopper read
//!   the rest as the next response (`tests/front_forward.rs` compares both servers byte for byte).
//! - **Limits** on head size, header count and URI length answer 431/414 as hyper does
//!   (`tests/fast_path.rs`, `tests/limits.rs`).
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

pub mod framing;
pub mod head;
pub mod names;
pub(crate) mod response_head;
pub mod scan;
pub(crate) mod wire;
pub(crate) mod write;

pub(crate) use head::Head;
pub use head::HeadLimits;
