//! Resolving a reference (`href`, `Location`) against the page's URL, RFC 3986 section 5.
//!
//! Comparing canonicals needs absolute URLs: old may write `/p/1`, new `https://shop/p/1`, and
//! `../p/1` must mean the same thing for both. The subset here is what pages and redirects use;
//! no percent-decoding or IDNA, because both storefronts' values go through the same steps and
//! only their equality matters. A dependency on a full URL crate is not needed for that.

/// The parts of an absolute URL: `scheme://authority` + path + `?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parts<'a> {
    scheme: &'a str,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then(|| (scheme, &s[colon + 1..]))
}

/// Splits `//authority/path?query` (scheme removed, fragment removed).
fn split_rest(rest: &str) -> (Option<&str>, &str, Option<&str>) {
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if let Some(after) = before_query.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        (Some(&after[..end]), &after[end..], query)
    } else {
        (None, before_query, query)
    }
}

fn strip_fragment(s: &str) -> &str {
    s.find('#').map_or(s, |i| &s[..i])
}

/// RFC 3986 5.2.4: removes `.` and `..` segments.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        if i == 0 && absolute {
            continue;
        }
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    if absolute {
        result.push('/');
    }
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

/// Lowercases the scheme and host (they are case-insensitive) and drops a default port, so
/// `HTTPS://Shop.example:443/p` and `https://shop.example/p` compare equal.
fn normalize_origin(scheme: &str, authority: &str) -> (String, String) {
    let scheme = scheme.to_ascii_lowercase();
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let mut host = hostport.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    if let Some(port) = default_port {
        if host.ends_with(port) && !host.ends_with("]") {
            host.truncate(host.len() - port.len());
        }
    }
    (scheme, format!("{userinfo}{host}"))
}

fn build(scheme: &str, authority: Option<&str>, path: &str, query: Option<&str>) -> String {
    let mut out = String::new();
    match authority {
        Some(a) => {
            let (s, a) = normalize_origin(scheme, a);
            out.push_str(&s);
            out.push_str("://");
            out.push_str(&a);
            if !path.is_empty() && !path.starts_with('/') {
                out.push('/');
            }
            if path.is_empty() {
                out.push('/');
            }
        }
        None => {
            out.push_str(&scheme.to_ascii_lowercase());
            out.push(':');
        }
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn parse_absolute(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = split_scheme(strip_fragment(url))?;
    let (authority, path, query) = split_rest(rest);
    Some(Parts {
        scheme,
        authority,
        path,
        query,
    })
}

/// HTML strips leading/trailing ASCII whitespace from URLs and removes tabs and newlines inside.
fn clean_reference(reference: &str) -> String {
    reference
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// `reference` resolved against the absolute URL `base`, without fragment, with a normalized
/// origin; `None` when `base` is not absolute (then nothing can be resolved reliably).
pub fn resolve(base: &str, reference: &str) -> Option<String> {
    let reference = clean_reference(reference);
    let reference = strip_fragment(&reference);
    if let Some((scheme, rest)) = split_scheme(reference) {
        let (authority, path, query) = split_rest(rest);
        let path = if authority.is_some() || path.starts_with('/') {
            remove_dot_segments(path)
        } else {
            path.to_owned()
        };
        return Some(build(scheme, authority, &path, query));
    }
    let base = parse_absolute(base)?;
    let (authority, path, query) = split_rest(reference);
    if authority.is_some() {
        return Some(build(
            base.scheme,
            authority,
            &remove_dot_segments(path),
            query,
        ));
    }
    if path.is_empty() {
        let query = query.or(base.query);
        return Some(build(base.scheme, base.authority, base.path, query));
    }
    let merged = if path.starts_with('/') {
        remove_dot_segments(path)
    } else {
        let dir = match base.path.rfind('/') {
            Some(i) => &base.path[..=i],
            None if base.authority.is_some() => "/",
            None => "",
        };
        remove_dot_segments(&format!("{dir}{path}"))
    };
    Some(build(base.scheme, base.authority, &merged, query))
}

/// `url` with a normalized origin (see [`resolve`]); itself when not absolute.
pub fn normalize(url: &str) -> String {
    match parse_absolute(url) {
        Some(p) => build(p.scheme, p.authority, &remove_dot_segments(p.path), p.query),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3986_normal_examples() {
        // RFC 3986 section 5.4.1, base http://a/b/c/d;p?q
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("./../g", "http://a/b/g"),
            ("g/../h", "http://a/b/c/h"),
        ] {
            assert_eq!(
                resolve(base, reference).as_deref(),
                Some(expected),
                "{reference}"
            );
        }
    }

    #[test]
    fn origins_are_normalized_and_whitespace_cleaned() {
        assert_eq!(
            resolve("http://x/", " HTTPS://Shop.Example:443/P?a=1#top \n").as_deref(),
            Some("https://shop.example/P?a=1")
        );
        assert_eq!(
            resolve("https://shop.example/a/b", "/c\n/d").as_deref(),
            Some("https://shop.example/c/d")
        );
        assert_eq!(normalize("HTTP://A:80"), "http://a/");
        assert_eq!(normalize("http://a:8080/x"), "http://a:8080/x");
        assert_eq!(normalize("/relative"), "/relative");
    }

    #[test]
    fn relative_base_resolves_only_absolute_references() {
        assert_eq!(resolve("/not/absolute", "x"), None);
        assert_eq!(
            resolve("/not/absolute", "https://a/x").as_deref(),
            Some("https://a/x")
        );
    }
}
