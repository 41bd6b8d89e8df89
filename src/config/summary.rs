//! The human summary printed by `cutover check`: what the proxy will do, in the order it does it.

use std::fmt;

use crate::routing::{Action, HostPattern};
use crate::state::Snapshot;

/// Displays a snapshot for operators.
pub struct Summary<'a>(pub &'a Snapshot);

fn secs(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let listeners: Vec<String> = s.listeners.iter().map(|l| l.address.to_string()).collect();
        writeln!(f, "listeners:   {}", listeners.join(", "))?;
        match s.admin {
            Some(a) => writeln!(f, "admin:       {a}")?,
            None => writeln!(f, "admin:       off")?,
        }
        writeln!(f, "storefronts:")?;
        for (sf, sr) in s.storefronts.iter().zip(&s.routing.storefronts) {
            let u = &sf.upstream.settings;
            writeln!(
                f,
                "  {:<10} {}://{}  host={} connect={} headers={} pool={}{}",
                sf.name,
                u.scheme,
                u.authority,
                match u.host_header {
                    crate::upstream::HostHeader::Client => "client",
                    crate::upstream::HostHeader::Upstream => "upstream",
                },
                secs(u.connect_timeout),
                secs(u.response_header_timeout),
                u.pool_max_idle,
                sr.evacuated_at
                    .map_or(String::new(), |t| format!(" evacuated_at={t}")),
            )?;
        }
        let sp = s.routing.split;
        writeln!(
            f,
            "split:       {} -> {}, {}.{:02}% of shoppers on {}",
            s.storefronts[sp.from].name,
            s.storefronts[sp.to].name,
            sp.share_bp / 100,
            sp.share_bp % 100,
            s.storefronts[sp.to].name
        )?;
        writeln!(f, "routes (first match wins):")?;
        for (i, r) in s.routing.routes.iter().enumerate() {
            let m = &r.matcher;
            let mut conds = Vec::new();
            match &m.host {
                Some(HostPattern::Exact(h)) => conds.push(format!("host={h}")),
                Some(HostPattern::Suffix(h)) => conds.push(format!("host=*{h}")),
                None => {}
            }
            if let Some(p) = &m.path_prefix {
                conds.push(format!(
                    "path_prefix={}",
                    if p.is_empty() { "/" } else { p }
                ));
            }
            if let Some(p) = &m.path {
                conds.push(format!("path={p}"));
            }
            if !m.methods.is_empty() {
                let ms: Vec<&str> = m.methods.iter().map(|m| m.as_str()).collect();
                conds.push(format!("method={}", ms.join("|")));
            }
            if let Some((n, v)) = &m.header {
                conds.push(format!(
                    "header {n}{}",
                    v.as_ref().map_or(String::new(), |v| format!("={v:?}"))
                ));
            }
            if let Some((n, v)) = &m.cookie {
                conds.push(format!(
                    "cookie {n}{}",
                    v.as_ref().map_or(String::new(), |v| format!("={v}"))
                ));
            }
            let to = match r.action {
                Action::Split => "split".to_string(),
                Action::Storefront(id) => s.storefronts[id].name.clone(),
            };
            let conds = if conds.is_empty() {
                "(everything else)".to_string()
            } else {
                conds.join(" ")
            };
            let n = if i + 1 == s.routing.routes.len() {
                "-".to_string()
            } else {
                (i + 1).to_string()
            };
            writeln!(f, "  {n:>2}. {:<12} {:<40} -> {to}", r.name, conds)?;
        }
        let c = &s.routing.cohort;
        writeln!(
            f,
            "cohort:      cookie {} (max-age {}), pinning {}{}, bucket from {}",
            c.cookie,
            secs(c.max_age),
            if c.pinning { "on, ttl " } else { "off" },
            if c.pinning {
                secs(c.pin_ttl)
            } else {
                String::new()
            },
            c.session_cookie
                .as_ref()
                .map_or("a random draw for new shoppers".to_string(), |n| format!(
                    "session cookie `{n}`, else a random draw"
                )),
        )?;
        let o = &s.routing.overrides;
        if o.enabled {
            writeln!(
                f,
                "override:    ?{}=<storefront>|clear or header {}; {} (pins for {})",
                o.query_param,
                o.header,
                if o.token.is_some() {
                    "token required"
                } else {
                    "no token required"
                },
                secs(o.ttl)
            )?;
        } else {
            writeln!(f, "override:    disabled")?;
        }
        let l = &s.limits;
        writeln!(
            f,
            "limits:      header timeout {}, header bytes {}, headers {}, URI {}, body idle {}, connections {}, drain {}",
            secs(l.header_read_timeout),
            l.max_header_bytes,
            l.max_headers,
            l.max_uri_length,
            secs(l.body_idle_timeout),
            l.max_connections,
            secs(l.drain_timeout)
        )
    }
}

/// Things that are valid but probably not what the operator wants.
pub fn warnings(s: &Snapshot) -> Vec<String> {
    let mut w = Vec::new();
    if s.routing.cohort.default_key {
        w.push("cohort.key is not set: cohort cookies are signed with a public default key, so shoppers could forge a staff override pin; set cohort.key (the same on every replica)".into());
    }
    if s.routing.overrides.enabled && s.routing.overrides.token.is_none() {
        w.push("override has no token: anyone can pick a storefront with ?cutover=<name>".into());
    }
    // Certificate warnings (expiring within 14 days, misordered chain): errors already failed the
    // load, but these would only reach the log, which `cutover check` users do not read.
    let base = s
        .source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    for (i, l) in s.listeners.iter().enumerate() {
        let Some(tls) = &l.tls else { continue };
        for p in crate::tls::check(tls, base) {
            if !p.is_error() {
                w.push(format!(
                    "listener[{i}].tls: {}: {}",
                    p.file.display(),
                    p.message
                ));
            }
        }
    }
    w
}
