//! The cohort cookie: which bucket a shopper is in, and which storefront they are pinned to.
//!
//! A shopper's bucket (0..9999) decides their side of the split: `bucket < share_bp` goes to the
//! split's `to` storefront. Because the bucket never changes, raising the share only ever moves
//! shoppers from `from` to `to`. A pin, when present and still valid, overrides the bucket so that a
//! shopper mid-checkout is not moved when the share goes down.
//!
//! The cookie is signed (keyed SipHash) so a shopper cannot forge a staff override pin, and the
//! bucket derived from a session cookie uses a keyed hash so every replica, on every restart,
//! computes the same bucket for the same session.
//!
//! Key rotation: `previous_keys` are accepted for verification only. A cookie signed by one keeps
//! its bucket and pin and is re-signed with the current key on the next response, so a key can be
//! replaced without re-bucketing shoppers (see docs/operations.md for the fleet procedure).
//!
//! Format: `v1.<bucket>.<pin>.<mac>` where `<pin>` is `-` or `<kind>~<storefront>~<issued unix s>`,
//! kind `s` (assigned by the split) or `o` (staff override).

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::COOKIE;
use siphasher::sip::SipHasher13;

use crate::http1::scan;
use crate::routing::request_headers::RequestHeaders;
use crate::routing::StorefrontId;

/// Number of buckets; a share in basis points compares directly against a bucket.
pub const BUCKETS: u16 = 10_000;

/// Used when no `cohort.key` is configured; `cutover check` warns about it.
pub const DEFAULT_KEY: &str = "cutover-default-cohort-key: set cohort.key in production";

/// Keys derived from the configured secret, one per purpose so a MAC never doubles as a bucket.
#[derive(Clone)]
pub struct CohortKeys {
    mac: (u64, u64),
    bucket: (u64, u64),
    /// MAC keys of `previous_keys`: verify only, never sign. Usually empty; one or two while a
    /// key is being rotated.
    previous_macs: Vec<(u64, u64)>,
}

impl std::fmt::Debug for CohortKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CohortKeys(..)")
    }
}

impl CohortKeys {
    /// Derives the keys from an operator secret.
    pub fn derive(secret: &str) -> Self {
        let part = |label: &str| {
            let mut h = SipHasher13::new_with_keys(0x6375_746f_7665_7221, 0x636f_686f_7274_2121);
            h.write(label.as_bytes());
            h.write(&[0]);
            h.write(secret.as_bytes());
            h.finish()
        };
        CohortKeys {
            mac: (part("mac/0"), part("mac/1")),
            bucket: (part("bucket/0"), part("bucket/1")),
            previous_macs: Vec::new(),
        }
    }

    /// These keys, also accepting cookies signed with any of `previous` (older secrets being
    /// rotated out). Signing and session buckets keep using the current secret.
    pub fn with_previous<S: AsRef<str>>(mut self, previous: &[S]) -> Self {
        self.previous_macs = previous
            .iter()
            .map(|p| CohortKeys::derive(p.as_ref()).mac)
            .collect();
        self
    }

    fn mac(&self, payload: &str) -> u64 {
        mac_with(self.mac, payload)
    }

    /// Which key signed `payload` with `mac`: `Some(false)` the current one, `Some(true)` a
    /// previous one, `None` none of them.
    fn verify(&self, payload: &str, mac: u64) -> Option<bool> {
        if self.mac(payload) == mac {
            return Some(false);
        }
        self.previous_macs
            .iter()
            .any(|k| mac_with(*k, payload) == mac)
            .then_some(true)
    }

    /// The bucket of an existing session cookie value: stable across replicas and restarts.
    pub fn bucket_of(&self, session: &str) -> u16 {
        bucket_of_hash(self.session_hash(session))
    }

    /// The keyed 64-bit hash of a session cookie value: its bucket, and its identity when
    /// counting shoppers (`routing::shopper`).
    pub fn session_hash(&self, session: &str) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.bucket.0, self.bucket.1);
        h.write(session.as_bytes());
        h.finish()
    }
}

/// The bucket of a session whose [`CohortKeys::session_hash`] is `hash`.
pub fn bucket_of_hash(hash: u64) -> u16 {
    (hash % u64::from(BUCKETS)) as u16
}

fn mac_with(key: (u64, u64), payload: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write(payload.as_bytes());
    h.finish()
}

/// Why a shopper is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// The split assigned them and pinning is on.
    Split,
    /// Staff forced a storefront.
    Override,
}

/// A shopper held on one storefront regardless of the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Where they are held.
    pub storefront: StorefrontId,
    /// Who put them there.
    pub kind: PinKind,
    /// Unix seconds when the pin was issued; compared with TTLs and evacuations.
    pub issued: u64,
}

/// The decoded, verified contents of a cohort cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CohortCookie {
    /// 0..9999.
    pub bucket: u16,
    /// Present while the shopper is held on a storefront.
    pub pin: Option<Pin>,
}

/// Cookie attributes fixed by configuration.
#[derive(Debug, Clone)]
pub struct CohortPolicy {
    /// Cookie name, `cutover_cohort` by default.
    pub cookie: String,
    /// `Max-Age` of the cookie.
    pub max_age: Duration,
    /// An existing session cookie whose value decides the bucket of shoppers without a cohort cookie.
    pub session_cookie: Option<String>,
    /// Signing and hashing keys.
    pub keys: CohortKeys,
    /// Whether the split pins shoppers to where it sent them.
    pub pinning: bool,
    /// How long a split pin holds; refreshed while the shopper keeps coming back.
    pub pin_ttl: Duration,
    /// Whether the key is the public default (reported by `cutover check`).
    pub default_key: bool,
}

impl CohortPolicy {
    /// Default cookie name.
    pub const DEFAULT_COOKIE: &'static str = "cutover_cohort";
    /// Default cookie lifetime: 30 days.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
    /// Default split pin lifetime: 2 hours.
    pub const DEFAULT_PIN_TTL: Duration = Duration::from_secs(2 * 3600);

    /// The defaults with keys derived from `secret`: what `[cohort] key = "..."` alone gives.
    pub fn with_key(secret: &str) -> Self {
        CohortPolicy {
            cookie: Self::DEFAULT_COOKIE.to_string(),
            max_age: Self::DEFAULT_MAX_AGE,
            session_cookie: None,
            keys: CohortKeys::derive(secret),
            pinning: false,
            pin_ttl: Self::DEFAULT_PIN_TTL,
            default_key: secret == DEFAULT_KEY,
        }
    }
}

/// Looks up a cookie by name across every `Cookie` header (h2 clients may send several).
///
/// Works on the bytes: a `Cookie` header is often long, and only the one value is validated as
/// text (a foreign cookie that is not UTF-8 no longer hides ours).
pub fn find_cookie<'a>(headers: impl Into<RequestHeaders<'a>>, name: &str) -> Option<&'a str> {
    let name = name.as_bytes();
    headers.into().get_all(&COOKIE).find_map(|v| {
        scan::split_bytes(v, b';').find_map(|pair| {
            let rest = pair.trim_ascii_start().strip_prefix(name)?;
            let mut value = rest.trim_ascii_start().strip_prefix(b"=")?.trim_ascii();
            while let [b'"', inner @ ..] = value {
                value = inner;
            }
            while let [inner @ .., b'"'] = value {
                value = inner;
            }
            std::str::from_utf8(value).ok()
        })
    })
}

/// Decodes and verifies a cookie value. `None` means absent, forged, or from another key: the
/// shopper is then treated as new (and the cookie rewritten).
pub fn decode(
    value: &str,
    keys: &CohortKeys,
    storefront_id: impl Fn(&str) -> Option<StorefrontId>,
) -> Option<Decoded> {
    let (payload, mac) = scan::rsplit_once(value, b'.')?;
    if mac.is_empty() || mac.len() > 16 {
        return None;
    }
    let mac = scan::parse_hex(mac.as_bytes())?;
    let signed_by_previous = keys.verify(payload, mac)?;
    let (version, rest) = scan::split_once(payload, b'.')?;
    if version != "v1" {
        return None;
    }
    let (bucket, pin_text) = scan::split_once(rest, b'.')?;
    let bucket = scan::parse_decimal(bucket.as_bytes()).and_then(|b| u16::try_from(b).ok())?;
    if bucket >= BUCKETS {
        return None;
    }
    if pin_text == "-" {
        return Some(Decoded {
            cookie: CohortCookie { bucket, pin: None },
            stale_pin: false,
            signed_by_previous,
        });
    }
    let (kind, rest) = scan::split_once(pin_text, b'~')?;
    let kind = match kind {
        "s" => PinKind::Split,
        "o" => PinKind::Override,
        _ => return None,
    };
    let (name, issued) = scan::split_once(rest, b'~')?;
    let issued = scan::parse_decimal(issued.as_bytes())?;
    // A pin to a storefront that no longer exists is dropped, the bucket kept.
    let pin = storefront_id(name).map(|storefront| Pin {
        storefront,
        kind,
        issued,
    });
    Some(Decoded {
        cookie: CohortCookie { bucket, pin },
        stale_pin: pin.is_none(),
        signed_by_previous,
    })
}

/// A verified cookie, and whether part of it referred to something gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// What the cookie says.
    pub cookie: CohortCookie,
    /// The pin named a storefront that is no longer configured.
    pub stale_pin: bool,
    /// Signed with one of `previous_keys`: valid, but to be re-signed with the current key.
    pub signed_by_previous: bool,
}

/// Encodes and signs a cookie value.
pub fn encode<N: AsRef<str>>(
    cookie: &CohortCookie,
    keys: &CohortKeys,
    storefront_name: impl Fn(StorefrontId) -> N,
) -> String {
    let mut value = String::with_capacity(48);
    push_value(&mut value, cookie, keys, storefront_name);
    value
}

/// The `Set-Cookie` value for a cohort cookie: `<name>=<signed value>; Path=/; ...`.
///
/// Built in one buffer with no `format!`: every first visit sets one, and so does every
/// crawler request (crawlers keep no cookies), which is much of the traffic a migration's
/// redirects are for.
pub fn set_cookie<N: AsRef<str>>(
    policy: &CohortPolicy,
    cookie: &CohortCookie,
    storefront_name: impl Fn(StorefrontId) -> N,
    secure: bool,
) -> String {
    let mut out = String::with_capacity(policy.cookie.len() + 128);
    out.push_str(&policy.cookie);
    out.push('=');
    push_value(&mut out, cookie, &policy.keys, storefront_name);
    out.push_str("; Path=/; Max-Age=");
    scan::push_decimal_str(&mut out, policy.max_age.as_secs());
    out.push_str("; HttpOnly; SameSite=Lax");
    if secure {
        out.push_str("; Secure");
    }
    out
}

/// Appends `v1.<bucket>.<pin>.<mac>`, the MAC over what this call appended before it.
fn push_value<N: AsRef<str>>(
    out: &mut String,
    cookie: &CohortCookie,
    keys: &CohortKeys,
    storefront_name: impl Fn(StorefrontId) -> N,
) {
    let start = out.len();
    out.push_str("v1.");
    scan::push_decimal_str(out, u64::from(cookie.bucket));
    out.push('.');
    match cookie.pin {
        None => out.push('-'),
        Some(pin) => {
            out.push(match pin.kind {
                PinKind::Split => 's',
                PinKind::Override => 'o',
            });
            out.push('~');
            out.push_str(storefront_name(pin.storefront).as_ref());
            out.push('~');
            scan::push_decimal_str(out, pin.issued);
        }
    }
    let mac = keys.mac(&out[start..]);
    out.push('.');
    scan::push_hex16(out, mac);
}

/// Hands out buckets to shoppers seen for the first time.
///
/// A Weyl sequence (golden-ratio stride) instead of independent random draws: any run of
/// consecutive new shoppers covers the buckets almost evenly, so 1% means 1% from the first
/// hundred shoppers on, not 1% +/- noise. The start is random per process so replicas differ.
pub struct FreshBuckets {
    next: AtomicU64,
}

impl Default for FreshBuckets {
    fn default() -> Self {
        Self::new(fastrand::u64(..))
    }
}

impl FreshBuckets {
    /// A sequence starting at `seed` (tests pass a fixed seed).
    pub fn new(seed: u64) -> Self {
        FreshBuckets {
            next: AtomicU64::new(seed),
        }
    }

    /// The next bucket.
    pub fn next(&self) -> u16 {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let x = self.next.fetch_add(GOLDEN, Ordering::Relaxed);
        ((u128::from(x) * u128::from(BUCKETS)) >> 64) as u16
    }
}

#[cfg(test)]
mod tests;
