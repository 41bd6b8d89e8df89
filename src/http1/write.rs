//! Writing a response head the way hyper's HTTP/1 server does: status line, the headers,
//! `content-length`, `date`.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

/// `HTTP/1.1 301 Moved Permanently\r\n`.
pub(crate) fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `content-length` (when given), `date` and the blank line that ends the head.
pub(crate) fn end_head(out: &mut Vec<u8>, content_length: Option<usize>) {
    if let Some(n) = content_length {
        crate::http1::wire::content_length(out, n as u64);
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&date());
    out.extend_from_slice(b"\r\n\r\n");
}

thread_local! {
    /// The IMF-fixdate of the current second, as hyper caches it: formatting a date per
    /// response would cost more than the rest of the head.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for now.
fn date() -> [u8; 29] {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cached| {
        let (at, text) = cached.get();
        if at == secs {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == text.len() {
            text.copy_from_slice(formatted.as_bytes());
        }
        cached.set((secs, text));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_what_hyper_writes() {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let before = secs(SystemTime::now());
        let mut out = Vec::new();
        status_line(&mut out, StatusCode::MOVED_PERMANENTLY);
        out.extend_from_slice(b"location: /x\r\n");
        end_head(&mut out, Some(0));
        let after = secs(SystemTime::now());
        let text = String::from_utf8(out).unwrap();
        let (head, date) = text.split_once("date: ").unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 301 Moved Permanently\r\nlocation: /x\r\ncontent-length: 0\r\n"
        );
        assert!(date.ends_with(" GMT\r\n\r\n"), "{date:?}");
        // The cached date is the current second's, not a stale one.
        let written = secs(httpdate::parse_http_date(date.trim_end()).unwrap());
        assert!((before..=after).contains(&written), "{date:?}");
    }
}
