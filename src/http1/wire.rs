//! Lines of an HTTP/1 head, written into a byte buffer: shared by the request writer
//! (`outgoing`, `upstream::h1`) and the front's response writer (`front`), so every head cutover
//! writes itself is framed by the same few lines of code.

/// `name: value\r\n`, the value given in pieces written back to back (a folded list, or a
/// value and a suffix) so callers need not join them first.
#[inline]
pub(crate) fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[&[u8]]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for part in value {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// `content-length: n\r\n`.
#[inline]
pub(crate) fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    crate::http1::scan::push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_framed() {
        let mut out = Vec::new();
        header_line(&mut out, b"via", &[b"1.1 a", b", 1.1 b"]);
        content_length(&mut out, 4096);
        assert_eq!(out, b"via: 1.1 a, 1.1 b\r\ncontent-length: 4096\r\n");
    }
}
