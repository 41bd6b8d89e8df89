//! The access log for people: one short line per request, the way nginx's and HAProxy's logs
//! read in a terminal (`format = "text"`, what `cutover demo` shows). The JSON line stays the
//! format for machines.
//!
//! ```text
//! 2026-12-04T22:20:01Z 127.0.0.1 GET shop.example/products/1 200 old (split) 3.2 ms 1024 B id=4f…
//! ```
//! The host and path came from the request: anything but visible ASCII is escaped (`\u{9}`), so
//! a line always splits into the same fields and never moves a terminal's cursor.

use std::fmt::Write as _;

use super::{header_str, millis, AccessEntry};
use crate::routing::Reason;
use crate::values::time as rfc3339;

/// Appends `entry` as one human line to `out`.
pub(super) fn write_line(entry: &AccessEntry, out: &mut Vec<u8>) {
    let mut time = [0u8; rfc3339::LEN];
    let mut line = String::with_capacity(160);
    line.push_str(rfc3339::format(entry.time, &mut time));
    match entry.client_ip {
        Some(ip) => {
            let _ = write!(line, " {ip}");
        }
        None => line.push_str(" -"),
    }
    let _ = write!(line, " {} ", entry.method);
    push_escaped(&mut line, header_str(&entry.host).unwrap_or(""));
    push_escaped(&mut line, entry.uri.path());
    let _ = write!(line, " {}", entry.status.as_u16());
    match (&entry.storefront, entry.reason) {
        (Some(sf), Some(reason)) => {
            let _ = write!(line, " {sf} ({})", Reason::as_str(reason));
        }
        (Some(sf), None) => {
            let _ = write!(line, " {sf}");
        }
        (None, _) => line.push_str(" cutover"),
    }
    let _ = write!(line, " {} ms", millis(entry.total));
    let _ = write!(line, " {} B", entry.bytes_sent);
    if let Some(id) = header_str(&entry.request_id) {
        line.push_str(" id=");
        push_escaped(&mut line, id);
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

/// `s` with anything but visible ASCII shown as escapes (a space too: fields are split on it).
fn push_escaped(line: &mut String, s: &str) {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        line.push_str(s);
    } else {
        for c in s.chars() {
            if c.is_ascii_graphic() {
                line.push(c);
            } else {
                line.extend(c.escape_unicode());
            }
        }
    }
}
