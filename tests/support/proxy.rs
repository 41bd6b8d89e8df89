//! Configs for the proxy under test, and the proxy in-process (`cutover::app::start`), which
//! lets a test reload on demand and read the app's state; `process.rs` runs the binary.

use std::net::SocketAddr;

use std::path::Path;

use super::dir::TempConfig;
use super::stores::RecordingStore;
use super::wait::bounded;
use super::{KEY, WAIT};

/// A config to render: storefronts plus extra lines for each section.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    /// `(name, upstream URL, extra lines inside [storefront.NAME])`.
    pub stores: Vec<(String, String, String)>,
    /// `[split] new_share`, as written (`10`, `12.5`, `"12.5%"`).
    pub share: String,
    /// Lines inside `[[listener]]` besides the address (`name = "web"`).
    pub listener: String,
    /// Lines inside `[admin]`; `address = "off"` unless they set one.
    pub admin: String,
    /// Lines inside `[cohort]` (the key is always set).
    pub cohort: String,
    /// Lines inside `[limits]`.
    pub limits: String,
    /// Lines inside `[override]`.
    pub overrides: String,
    /// Lines inside `[headers]` (the storefront response header is on unless overridden here).
    pub headers: String,
    /// Appended verbatim at the end (routes).
    pub tail: String,
}

impl ConfigSpec {
    /// `old` and `new` at the given upstreams, `share` percent on `new`.
    pub fn new(old: &str, new: &str, share: f64) -> Self {
        ConfigSpec {
            stores: vec![
                ("old".into(), old.into(), String::new()),
                ("new".into(), new.into(), String::new()),
            ],
            share: share.to_string(),
            listener: String::new(),
            admin: String::new(),
            cohort: String::new(),
            limits: String::new(),
            overrides: String::new(),
            headers: String::new(),
            tail: String::new(),
        }
    }

    /// Extra lines for one storefront's table.
    pub fn store_extra(mut self, name: &str, lines: &str) -> Self {
        let s = self
            .stores
            .iter_mut()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no storefront {name} in spec"));
        s.2.push_str(lines);
        s.2.push('\n');
        self
    }

    /// Sets the share (percent).
    pub fn share(mut self, share: f64) -> Self {
        self.share = share.to_string();
        self
    }

    /// Sets `new_share` as written (`"12.5%"`, or a broken value for a rejection test).
    pub fn share_text(mut self, share: &str) -> Self {
        self.share = share.to_string();
        self
    }

    /// A third (or further) storefront, with extra lines for its table.
    pub fn store(mut self, name: &str, url: &str, lines: &str) -> Self {
        self.stores
            .push((name.into(), url.into(), format!("{lines}\n")));
        self
    }

    /// Extra `[[listener]]` lines.
    pub fn listener(mut self, lines: &str) -> Self {
        self.listener.push_str(lines);
        self.listener.push('\n');
        self
    }

    /// `[admin]` lines (an `address` among them replaces `"off"`).
    pub fn admin(mut self, lines: &str) -> Self {
        self.admin.push_str(lines);
        self.admin.push('\n');
        self
    }

    /// The admin API on a free loopback port.
    pub fn admin_on_loopback(self) -> Self {
        self.admin("address = \"127.0.0.1:0\"")
    }

    /// Extra `[cohort]` lines.
    pub fn cohort(mut self, lines: &str) -> Self {
        self.cohort.push_str(lines);
        self.cohort.push('\n');
        self
    }

    /// Extra `[limits]` lines.
    pub fn limits(mut self, lines: &str) -> Self {
        self.limits.push_str(lines);
        self.limits.push('\n');
        self
    }

    /// Extra `[override]` lines.
    pub fn overrides(mut self, lines: &str) -> Self {
        self.overrides.push_str(lines);
        self.overrides.push('\n');
        self
    }

    /// Extra `[headers]` lines.
    pub fn headers(mut self, lines: &str) -> Self {
        self.headers.push_str(lines);
        self.headers.push('\n');
        self
    }

    /// Appends raw TOML (routes) at the end.
    pub fn tail(mut self, toml: &str) -> Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let admin = if self
            .admin
            .lines()
            .any(|l| l.trim_start().starts_with("address"))
        {
            self.admin.clone()
        } else {
            format!("address = \"off\"\n{}", self.admin)
        };
        let mut s = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n{}\n[admin]\n{admin}\n",
            self.listener
        );
        for (name, url, extra) in &self.stores {
            s.push_str(&format!(
                "[storefront.{name}]\nupstream = \"{url}\"\n{extra}\n"
            ));
        }
        s.push_str(&format!("[split]\nnew_share = {}\n\n", self.share));
        s.push_str(&format!("[cohort]\nkey = \"{KEY}\"\n{}\n", self.cohort));
        s.push_str(&format!("[limits]\n{}\n", self.limits));
        s.push_str(&format!("[override]\n{}\n", self.overrides));
        let headers = if self.headers.contains("storefront_response_header") {
            self.headers.clone()
        } else {
            format!("storefront_response_header = true\n{}", self.headers)
        };
        s.push_str(&format!("[headers]\n{headers}\n"));
        s.push_str(&self.tail);
        s
    }
}

/// The proxy running inside the test process.
pub struct InProc {
    /// The started app.
    pub app: cutover::app::App,
    /// Its first listener.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: TempConfig,
}

impl InProc {
    /// Writes `spec` and starts the proxy on it.
    pub async fn start(spec: &ConfigSpec) -> Self {
        Self::start_text(&spec.render()).await
    }

    /// Starts the proxy on a literal config.
    pub async fn start_text(text: &str) -> Self {
        let config = TempConfig::new(text);
        let app = tokio::time::timeout(WAIT, cutover::app::start(config.path()))
            .await
            .expect("proxy start timed out")
            .unwrap_or_else(|e| panic!("proxy did not start: {e}\n{text}"));
        let addr = app.addresses[0];
        InProc { app, addr, config }
    }

    /// Rewrites the config and reloads it now (the same path SIGHUP and the file watcher take).
    pub async fn reload(&self, spec: &ConfigSpec) {
        self.config.rewrite(&spec.render());
        tokio::time::timeout(WAIT, self.app.reloader.reload("test"))
            .await
            .expect("reload timed out")
            .unwrap_or_else(|e| panic!("reload rejected: {e}"));
    }
}

/// `[storefront.old]` and `[storefront.new]` pointing at two plain backends.
pub fn storefronts(old: &RecordingStore, new: &RecordingStore) -> String {
    format!(
        "[storefront.old]\nupstream = \"http://{}\"\n\n[storefront.new]\nupstream = \"http://{}\"\n",
        old.addr, new.addr
    )
}

/// A `[[listener]]` on 127.0.0.1:0 with TLS, one `[[listener.tls.certificates]]` per
/// `(label, file stem, names)`; `extra` goes into `[listener.tls]` (e.g. `default = "x"`).
pub fn tls_listener(certs: &[(&str, &str, Option<&[&str]>)], extra: &str) -> String {
    let mut s = format!("[[listener]]\naddress = \"127.0.0.1:0\"\n[listener.tls]\n{extra}\n");
    for (label, stem, names) in certs {
        s.push_str(&format!(
            "[[listener.tls.certificates]]\nlabel = \"{label}\"\ncert = \"{stem}.crt\"\nkey = \"{stem}.key\"\n"
        ));
        if let Some(names) = names {
            let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            s.push_str(&format!("names = [{}]\n", list.join(", ")));
        }
    }
    s
}

/// Starts the proxy in-process from `dir/cutover.toml`, next to the certificates the config
/// names by relative path.
pub async fn start_in(dir: &Path, text: &str) -> cutover::app::App {
    // Without an [admin] section the admin listener takes its default port; tests run in parallel.
    let text = if text.contains("[admin]") {
        text.to_string()
    } else {
        format!("{text}\n[admin]\naddress = \"127.0.0.1:0\"\n")
    };
    let text = text.as_str();
    let path = super::dir::write_config(dir, text);
    match bounded("proxy start", cutover::app::start(&path)).await {
        Ok(app) => app,
        Err(e) => panic!("proxy did not start: {e}\nconfig:\n{text}"),
    }
}
