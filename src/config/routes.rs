//! `[[route]]` tables -> precompiled [`Route`]s, with a catch-all `default` appended.

use http::Method;

use super::check::{name_value_header, valid_name, Check};
use super::raw::RawConfig;
use crate::routing::{Action, HostPattern, Matcher, Route};

/// Compiles the routes in order; the last one is always the implicit `default` split.
pub(super) fn compile_routes(c: &mut Check<'_>, raw: &RawConfig, names: &[String]) -> Vec<Route> {
    let id_of = |name: &str| names.iter().position(|n| n == name);
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let r = r.get_ref();
        let name = r
            .name
            .as_ref()
            .map_or(format!("route{i}"), |n| n.get_ref().clone());
        let field = format!("route[{i}]");
        if let Some(n) = &r.name {
            if !valid_name(n.get_ref()) || n.get_ref() == "default" {
                c.at(
                    n,
                    format!("{field}.name"),
                    "route names use letters, digits, `_` and `-`; `default` is reserved",
                );
            } else if routes.iter().any(|x: &Route| x.name == *n.get_ref()) {
                c.at(n, format!("{field}.name"), "another route has this name");
            }
        }
        let action = if r.to.get_ref() == "split" {
            Action::Split
        } else {
            match id_of(r.to.get_ref()) {
                Some(id) => Action::Storefront(id),
                None => {
                    let known: Vec<&str> = names.iter().map(String::as_str).collect();
                    c.at(
                        &r.to,
                        format!("{field}.to"),
                        format!(
                            "unknown storefront `{}` (known: {}, or `split`)",
                            r.to.get_ref(),
                            known.join(", ")
                        ),
                    );
                    Action::Split
                }
            }
        };
        let mut m = Matcher::default();
        if let Some(h) = &r.host {
            let h_str = h.get_ref().to_ascii_lowercase();
            m.host = Some(match h_str.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => {
                    HostPattern::Suffix(suffix.to_string())
                }
                Some(_) => {
                    c.at(
                        h,
                        format!("{field}.host"),
                        "wildcards are written `*.example.com`",
                    );
                    HostPattern::Exact(h_str)
                }
                None => HostPattern::Exact(h_str),
            });
        }
        for (value, key) in [(&r.path_prefix, "path_prefix"), (&r.path, "path")] {
            if let Some(p) = value {
                if !p.get_ref().starts_with('/') {
                    c.at(p, format!("{field}.{key}"), "paths start with `/`");
                }
            }
        }
        m.path_prefix = r
            .path_prefix
            .as_ref()
            .map(|p| p.get_ref().trim_end_matches('/').to_string());
        m.path = r.path.as_ref().map(|p| p.get_ref().clone());
        if let Some(methods) = &r.method {
            for name in methods.get_ref().as_slice() {
                match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                    Ok(method) => m.methods.push(method),
                    Err(_) => c.at(
                        methods,
                        format!("{field}.method"),
                        format!("`{name}` is not an HTTP method"),
                    ),
                }
            }
        }
        if let Some(h) = &r.header {
            m.header = name_value_header(c, h, &format!("{field}.header"));
        }
        if let Some(ck) = &r.cookie {
            m.cookie = Some((ck.name.get_ref().clone(), ck.value.clone()));
        }
        routes.push(Route {
            name,
            matcher: m,
            action,
        });
    }
    routes.push(Route {
        name: "default".into(),
        matcher: Matcher::default(),
        action: Action::Split,
    });
    routes
}

#[cfg(test)]
mod tests;
