//! The coverage oracle against the snapshot in force: what a shopper or crawler asking for an
//! old URL gets once the share is at 100% on the new storefront.

use std::collections::HashSet;

use http::{HeaderMap, Method};

use crate::inventory::CoverageOracle;
use crate::redirects::RedirectTable;
use crate::routing::{Action, RequestView, StorefrontId};
use crate::state::Snapshot;

/// Answers from one snapshot: its redirect tables (chains already collapsed at load; a row
/// with status 410 is "gone"), its routes (a rule sending the URL to the split's `from`
/// storefront keeps it there on purpose), and same-path evidence when some is known.
pub struct SnapshotOracle<'a> {
    snap: &'a Snapshot,
    tables: Vec<&'a RedirectTable>,
    from: StorefrontId,
    no_headers: HeaderMap,
    same_path: &'a HashSet<String>,
}

impl<'a> SnapshotOracle<'a> {
    /// The whole plan: every table in order, the first with an entry answers (as the proxy does).
    pub fn whole_plan(snap: &'a Snapshot, same_path: &'a HashSet<String>) -> Self {
        Self::with_tables(
            snap,
            snap.redirects.iter().map(|r| &*r.table).collect(),
            same_path,
        )
    }

    /// One table only (the per-table gauge), with the same routes.
    pub fn one_table(snap: &'a Snapshot, table: usize, same_path: &'a HashSet<String>) -> Self {
        Self::with_tables(snap, vec![&*snap.redirects[table].table], same_path)
    }

    fn with_tables(
        snap: &'a Snapshot,
        tables: Vec<&'a RedirectTable>,
        same_path: &'a HashSet<String>,
    ) -> Self {
        SnapshotOracle {
            snap,
            tables,
            from: snap.routing.split.from,
            no_headers: HeaderMap::new(),
            same_path,
        }
    }

    /// The first table entry matching the URL: its `Location` (`None`: 410) and written status.
    fn hit(&self, host: &str, url: &str) -> Option<(Option<String>, u16)> {
        self.tables
            .iter()
            .find_map(|t| t.lookup(host, url))
            .map(|h| (h.location, h.written.as_u16()))
    }
}

impl CoverageOracle for SnapshotOracle<'_> {
    fn redirect_target(&self, host: &str, url: &str) -> Option<(String, u16)> {
        match self.hit(host, url)? {
            (Some(location), status) => Some((location, status)),
            (None, _) => None,
        }
    }

    fn is_gone(&self, host: &str, url: &str) -> bool {
        matches!(self.hit(host, url), Some((None, _)))
    }

    fn kept_on_old_by_rule(&self, host: &str, url: &str) -> bool {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        // A plain GET without headers or cookies: rules that need a staff header do not count.
        let view = RequestView {
            method: &Method::GET,
            host,
            path,
            query,
            headers: (&self.no_headers).into(),
        };
        let route = self.snap.routing.match_route(&view);
        matches!(self.snap.routing.routes[route].action, Action::Storefront(id) if id == self.from)
    }

    fn same_path_on_new_known(&self, _host: &str, url: &str) -> bool {
        self.same_path.contains(url)
    }
}
