//! Choosing a certificate by SNI, swappable while the listener runs.
//!
//! The table is immutable and replaced whole through `ArcSwap`: a handshake
//! loads it once (no lock), a reload builds a new table off to the side and
//! stores it. Connections already established keep the `CertifiedKey` they
//! were handed, so a swap never disturbs them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Name -> certificate lookup for one generation of certificates.
pub(crate) struct SniTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain: `*.shop.example` is stored as `shop.example`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniTable {
    pub(crate) fn new(default: Arc<CertifiedKey>) -> Self {
        SniTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Adds a normalised name (lowercase, no trailing dot). Returns false when
    /// the name is already taken, so the caller can report the clash.
    pub(crate) fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) -> bool {
        let (map, k) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, name),
        };
        if map.contains_key(k) {
            return false;
        }
        map.insert(k.to_string(), key);
        true
    }

    /// Exact name, then a one-label wildcard, then the default. No SNI (IP
    /// literal clients, old health checkers) also gets the default.
    pub(crate) fn lookup(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        let owned;
        let mut name = name.strip_suffix('.').unwrap_or(name);
        // rustls hands over lowercase names already; stay correct without
        // allocating on the common path if that ever changes.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            owned = name.to_ascii_lowercase();
            name = &owned;
        }
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key;
            }
        }
        &self.default
    }

    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

/// The rustls certificate resolver of a [`super::TlsListener`].
pub struct SniResolver {
    table: ArcSwap<SniTable>,
}

impl SniResolver {
    pub(crate) fn new(table: SniTable) -> Self {
        SniResolver {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// New handshakes see `table` from now on.
    pub(crate) fn swap(&self, table: SniTable) {
        self.table.store(Arc::new(table));
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.table.load().len())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.table.load().lookup(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    /// A stand-in key: lookup never signs, so only identity matters.
    fn key(tag: u8) -> Arc<CertifiedKey> {
        let provider = crate::tls::provider();
        let signing = rcgen::KeyPair::generate().unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(signing.serialize_der()).unwrap();
        let sk = provider.key_provider.load_private_key(der).unwrap();
        Arc::new(CertifiedKey::new(vec![CertificateDer::from(vec![tag])], sk))
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (d, w, e) = (key(1), key(2), key(3));
        let mut t = SniTable::new(d.clone());
        assert!(t.insert("*.shop.example", w.clone()));
        assert!(t.insert("www.shop.example", e.clone()));
        assert!(!t.insert("www.shop.example", d.clone()));
        assert!(Arc::ptr_eq(t.lookup(Some("www.shop.example")), &e));
        assert!(Arc::ptr_eq(t.lookup(Some("WWW.Shop.Example.")), &e));
        assert!(Arc::ptr_eq(t.lookup(Some("fr.shop.example")), &w));
        assert!(Arc::ptr_eq(t.lookup(Some("a.fr.shop.example")), &d));
        assert!(Arc::ptr_eq(t.lookup(Some("shop.example")), &d));
        assert!(Arc::ptr_eq(t.lookup(None), &d));
    }
}
