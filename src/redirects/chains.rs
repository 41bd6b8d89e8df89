//! Chains and loops. Every target is looked up in the table itself, exactly as the browser's
//! next request would be: a hit means a chain (collapsed so the source answers with the final
//! target in one hop, because browsers give up on long chains and every hop costs a round
//! trip), coming back to a visited entry means a loop (rejected, cycle printed).

use super::error::{LoadError, LoadErrors};
use super::report::Report;
use super::table::RedirectTable;

/// Longer chains are rejected: nothing sane needs them, and it bounds the work per entry.
pub(crate) const MAX_HOPS: usize = 16;

/// Where a target lands: the host and path-and-query the browser will ask for next. Targets
/// are canonical (lowercase authority), so the host is a plain slice.
fn landing<'a>(target: &'a str, source_host: &'a str) -> (&'a str, &'a str) {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let host = match authority.rfind(':') {
                Some(i) if !authority.ends_with(']') => &authority[..i],
                _ => authority,
            };
            let pq = if end == rest.len() { "/" } else { &rest[end..] };
            return (host, without_fragment(pq));
        }
    }
    (source_host, without_fragment(target))
}

/// Browsers never send the fragment, so the next request is the URL without it.
fn without_fragment(pq: &str) -> &str {
    pq.split('#').next().unwrap_or(pq)
}

/// Resolves every entry's chain, then rewrites the targets of the ones that had a chain.
pub(crate) fn collapse(
    table: &mut RedirectTable,
    file: &str,
    errs: &mut LoadErrors,
    report: &mut Report,
) {
    let mut rewrites: Vec<(u32, String, bool)> = Vec::new();
    let mut hops: Vec<u32> = Vec::new();
    report.longest_chain = usize::from(!table.is_empty());
    for i in 0..table.len() as u32 {
        if table.status(i) == 410 {
            continue;
        }
        // Most targets are not redirected themselves: look once without allocating.
        let (first_host, pq) = landing(table.target(i), table.host_of(i));
        // A splat target stands for every path below it: only prefix rules catch all of them.
        let Some(mut found) = table.find(first_host, pq, table.is_splat(i)) else {
            continue;
        };
        let mut host = first_host.to_string();
        let mut target = table.target(i).to_string();
        let mut splat = table.is_splat(i);
        let mut ok = true;
        hops.clear();
        hops.push(i);
        loop {
            let j = found.idx;
            if table.status(j) == 410 {
                let msg = format!(
                    "{:?} redirects to {target:?}, which line {} marks as gone (410)",
                    table.describe(i),
                    table.line(j)
                );
                report.warn(table.line(i), msg);
                break;
            }
            if let Some(pos) = hops.iter().position(|&h| h == j) {
                ok = false;
                // Report a cycle once: when walked from its first member in file order.
                if pos == 0 && hops.iter().all(|&h| h >= i) {
                    report_cycle(table, file, errs, &hops);
                }
                break;
            }
            hops.push(j);
            if hops.len() > MAX_HOPS {
                ok = false;
                errs.push(LoadError::ChainTooLong {
                    file: file.into(),
                    line: table.line(i),
                    url: table.describe(i),
                    max: MAX_HOPS,
                    chain: chain_text(table, &hops),
                });
                break;
            }
            let Some(loc) = found.location else { break };
            splat = splat && table.is_splat(j);
            target = loc;
            let (next_host, pq) = landing(&target, &host);
            match table.find(next_host, pq, splat) {
                Some(f) => {
                    found = f;
                    host = next_host.to_string();
                }
                None => break,
            }
        }
        if ok && hops.len() > 1 {
            // A redirect without a fragment keeps the one of the previous hop (RFC 9110 10.2.2).
            let first = table.target(i);
            if let (Some(f), false) = (first.find('#'), target.contains('#')) {
                target.push_str(&first[f..]);
            }
            report.longest_chain = report.longest_chain.max(hops.len());
            rewrites.push((i, target, splat));
        }
    }
    report.chains_collapsed = rewrites.len();
    for (i, target, splat) in rewrites {
        if table.set_target(i, &target, splat).is_none() {
            errs.push(LoadError::TooLarge {
                file: file.into(),
                max: u32::MAX as usize - 1,
                max_bytes: u32::MAX as usize,
            });
            return;
        }
    }
}

fn report_cycle(table: &RedirectTable, file: &str, errs: &mut LoadErrors, cycle: &[u32]) {
    let first = cycle[0];
    if cycle.len() == 1 {
        errs.push(LoadError::SelfRedirect {
            file: file.into(),
            line: table.line(first),
            url: table.describe(first),
        });
        return;
    }
    let mut text = chain_text(table, cycle);
    text.push_str(&format!(" -> {:?}", table.describe(first)));
    errs.push(LoadError::Loop {
        file: file.into(),
        line: table.line(first),
        cycle: text,
    });
}

fn chain_text(table: &RedirectTable, hops: &[u32]) -> String {
    hops.iter()
        .map(|&h| format!("{:?} (line {})", table.describe(h), table.line(h)))
        .collect::<Vec<_>>()
        .join(" -> ")
}
