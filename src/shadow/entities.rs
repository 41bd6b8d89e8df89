//! Character references in titles and attribute values: the named ones pages actually use in
//! titles and URLs, and every numeric one. Unknown names are kept as written, so two storefronts
//! that write the same unknown entity still compare equal.

/// Named references decoded (longest used in titles first does not matter: names end at `;`).
const NAMED: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("ndash", '–'),
    ("mdash", '—'),
    ("hellip", '…'),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("middot", '·'),
    ("bull", '•'),
    ("euro", '€'),
    ("pound", '£'),
    ("times", '×'),
];

/// Longest reference looked at (`&#x10FFFF;` and the names above fit).
const MAX_REFERENCE: usize = 10;

/// `text` with character references decoded.
pub fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match decode_one(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the reference at the start of `s` (which starts with `&`): the char and bytes used.
fn decode_one(s: &str) -> Option<(char, usize)> {
    // Bytes, not a str slice: the window may end inside a multi-byte character; `;` is ASCII so
    // slicing at it is always at a character boundary.
    let semi = s.bytes().take(MAX_REFERENCE + 2).position(|b| b == b';')?;
    let body = &s[1..semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        match char::from_u32(code) {
            Some('\0') | None => '\u{fffd}',
            Some(c) => c,
        }
    } else {
        NAMED.iter().find(|(name, _)| *name == body)?.1
    };
    Some((c, semi + 1))
}

/// `text` with runs of whitespace (including no-break spaces) turned into one space and trimmed,
/// as a browser shows a title.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_common_and_numeric_references() {
        assert_eq!(
            decode("Tom &amp; Jerry &lt;3&gt; &quot;x&quot; &#39;y&#x27; &euro;5"),
            "Tom & Jerry <3> \"x\" 'y' €5"
        );
        assert_eq!(decode("a&#0;b&#xFFFFFFFF;c"), "a\u{fffd}b\u{fffd}c");
        assert_eq!(
            decode("&#x110000000;"),
            "&#x110000000;",
            "too long to be a reference"
        );
    }

    #[test]
    fn keeps_unknown_or_unterminated_references() {
        assert_eq!(decode("a &unknown; b"), "a &unknown; b");
        assert_eq!(decode("R&D and &amp"), "R&D and &amp");
        assert_eq!(decode("?a=1&b=2"), "?a=1&b=2");
        assert_eq!(decode("&&amp;"), "&&");
        assert_eq!(decode("&é;"), "&é;");
    }

    #[test]
    fn collapses_whitespace() {
        assert_eq!(
            collapse_whitespace("  Shoes\n\t |\u{a0} Shop  "),
            "Shoes | Shop"
        );
        assert_eq!(collapse_whitespace("   "), "");
    }
}
