//! `pool_max_idle`, `pool_idle_ceiling` and `pool_peak_window` of a storefront: how many idle
//! connections its pool may keep (see `upstream::sizing` for how the pool follows its load).

use std::time::Duration;

use toml::Spanned;

use super::check::{positive, Check};
use super::raw::RawStorefront;

/// The adaptive pool's default ceiling. Each idle connection is a file descriptor and about
/// 20 KiB (the read buffer, the request head's, the kernel's socket buffers beyond that): 1024
/// covers a store with hundreds of shoppers in flight and stays far below a default
/// `ulimit -n` of 65536 next to `limits.max_connections`.
pub(super) const DEFAULT_CEILING: usize = 1024;

/// Above this, a cap is a typo or a misunderstanding (it would mean more file descriptors to one
/// storefront than most hosts allow a process).
const MAX_CAP: u32 = 65_536;

/// The default window: a minute of peak, so a lull between two waves of traffic keeps its
/// connections, and a burst's are closed a minute after it ends.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The hard cap on idle connections (`pool_max_idle` when set, else the ceiling) and the peak
/// window, with a problem at the field's line for each bad value.
pub(super) fn pool_sizing(c: &mut Check<'_>, sf: &RawStorefront, field: &str) -> (usize, Duration) {
    let mut bounded = |v: &Option<Spanned<u32>>, name: &str, min: u32| {
        let s = v.as_ref()?;
        let n = *s.get_ref();
        if n < min || n > MAX_CAP {
            c.at(
                s,
                format!("{field}.{name}"),
                format!(
                    "{n} idle connections: must be between {min} and {MAX_CAP} (each one holds a file descriptor)"
                ),
            );
        }
        Some(n as usize)
    };
    let ceiling = bounded(&sf.pool_idle_ceiling, "pool_idle_ceiling", 1).unwrap_or(DEFAULT_CEILING);
    // 0 is allowed: no keep-alive to this storefront.
    let cap = bounded(&sf.pool_max_idle, "pool_max_idle", 0).unwrap_or(ceiling);
    let window = positive(
        c,
        &sf.pool_peak_window,
        &format!("{field}.pool_peak_window"),
        DEFAULT_WINDOW,
    );
    (cap, window)
}
