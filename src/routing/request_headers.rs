//! A request's headers as routing reads them, whichever server parsed the request.
//!
//! hyper hands the service a `HeaderMap`. The HTTP/1 front (`front`) answers redirects straight
//! from the parsed head, where the headers are still `(name, value)` slices into the read
//! buffer: building a map for them would hash every name and allocate, only for routing to read
//! three or four of them. Routing, the cohort cookie and the override read through this view, so
//! both paths decide with the same code.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The headers of one request: hyper's map, or the raw head.
#[derive(Debug, Clone, Copy)]
pub enum RequestHeaders<'a> {
    /// Parsed by hyper.
    Map(&'a HeaderMap),
    /// Parsed by the HTTP/1 front, in arrival order (names as sent, any case).
    Raw(&'a [httparse::Header<'a>]),
}

impl<'a> From<&'a HeaderMap> for RequestHeaders<'a> {
    fn from(map: &'a HeaderMap) -> Self {
        RequestHeaders::Map(map)
    }
}

impl<'a> RequestHeaders<'a> {
    /// The first value of `name`.
    pub fn get(self, name: &HeaderName) -> Option<&'a [u8]> {
        match self {
            RequestHeaders::Map(m) => m.get(name).map(HeaderValue::as_bytes),
            RequestHeaders::Raw(raw) => raw
                .iter()
                .find(|h| same_name(h.name, name))
                .map(|h| h.value),
        }
    }

    /// Whether `name` is present.
    pub fn contains(self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// Every value of `name`, in order.
    pub fn get_all(self, name: &'a HeaderName) -> GetAll<'a> {
        match self {
            RequestHeaders::Map(m) => GetAll::Map(m.get_all(name).iter()),
            RequestHeaders::Raw(raw) => GetAll::Raw { raw, name },
        }
    }
}

/// `HeaderName`s are lowercase; names on the wire may be in any case.
fn same_name(wire: &str, name: &HeaderName) -> bool {
    wire.len() == name.as_str().len() && wire.eq_ignore_ascii_case(name.as_str())
}

/// The iterator of [`RequestHeaders::get_all`].
pub enum GetAll<'a> {
    /// Over hyper's map.
    Map(http::header::ValueIter<'a, HeaderValue>),
    /// Over the raw head.
    Raw {
        /// What is left to scan.
        raw: &'a [httparse::Header<'a>],
        /// The name looked for.
        name: &'a HeaderName,
    },
}

impl<'a> Iterator for GetAll<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            GetAll::Map(it) => it.next().map(HeaderValue::as_bytes),
            GetAll::Raw { raw, name } => {
                let at = raw.iter().position(|h| same_name(h.name, name))?;
                let value = raw[at].value;
                *raw = &raw[at + 1..];
                Some(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{COOKIE, HOST};

    /// The raw view answers exactly as the map built from the same head does.
    #[test]
    fn raw_and_map_views_agree() {
        let raw = [
            httparse::Header {
                name: "Host",
                value: b"shop.example",
            },
            httparse::Header {
                name: "cookie",
                value: b"a=1",
            },
            httparse::Header {
                name: "X-Other",
                value: b"x",
            },
            httparse::Header {
                name: "COOKIE",
                value: b"b=2",
            },
        ];
        let mut map = HeaderMap::new();
        for h in &raw {
            map.append(
                HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        let absent = HeaderName::from_static("x-absent");
        for view in [RequestHeaders::Raw(&raw), RequestHeaders::from(&map)] {
            assert_eq!(view.get(&HOST), Some(&b"shop.example"[..]));
            assert_eq!(view.get(&COOKIE), Some(&b"a=1"[..]));
            assert_eq!(
                view.get_all(&COOKIE).collect::<Vec<_>>(),
                [&b"a=1"[..], &b"b=2"[..]]
            );
            assert!(!view.contains(&absent));
            assert_eq!(view.get_all(&absent).count(), 0);
        }
    }
}
