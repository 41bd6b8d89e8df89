//! The deployment files under `deploy/` stay consistent with the proxy: every YAML/JSON file
//! parses, the Deployment probes the admin endpoints, the shipped ConfigMap is a valid cutover
//! config, and every stop timeout outlasts the drain it has to wait for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn extension(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Every document of every YAML file under deploy/, with the file it came from.
fn yaml_documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    files_under(&root().join("deploy"), &mut files);
    let mut docs = Vec::new();
    for f in files
        .iter()
        .filter(|f| matches!(extension(f), "yaml" | "yml"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                docs.push((f.clone(), v));
            }
        }
    }
    docs
}

fn kind<'a>(docs: &'a [(PathBuf, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|(_, d)| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "want exactly one {kind} under deploy/");
    &found[0].1
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v:?}"))
}

fn secs_of(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} should be a whole number, is {v:?}"))
}

/// The ConfigMap's cutover.toml, compiled for real (secret files replaced by temporary ones).
fn configmap_snapshot(docs: &[(PathBuf, Value)]) -> cutover::state::Snapshot {
    let cm = kind(docs, "ConfigMap");
    let toml = str_of(&cm["data"]["cutover.toml"], "ConfigMap data cutover.toml");
    let dir = tempfile::tempdir().unwrap();
    let secrets = "/run/secrets/cutover/";
    let deployment = kind(docs, "Deployment");
    let mounts = &deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    let mounted = mounts
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .any(|m| m["mountPath"] == secrets.trim_end_matches('/'));
    assert!(mounted, "the Deployment mounts the secrets at {secrets}");
    for name in ["cohort-key", "override-token", "admin-token"] {
        std::fs::write(dir.path().join(name), "a-test-secret-of-some-length").unwrap();
    }
    let local = format!("{}/", dir.path().display());
    let path = dir.path().join("cutover.toml");
    std::fs::write(&path, toml.replace(secrets, &local)).unwrap();
    match cutover::config::load_file(&path, 1, None, &cutover::metrics::Metrics::new()) {
        Ok((_, snap)) => snap,
        Err(e) => panic!("the ConfigMap's cutover.toml does not validate:\n{e}"),
    }
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut files = Vec::new();
    files_under(&root().join("deploy"), &mut files);
    let mut yaml = 0;
    for f in &files {
        match extension(f) {
            "json" => {
                let text = std::fs::read_to_string(f).unwrap();
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            "yaml" | "yml" => yaml += 1,
            _ => {}
        }
    }
    assert!(yaml >= 4, "deploy/kubernetes holds the manifests");
    for (f, doc) in yaml_documents() {
        if f.starts_with(root().join("deploy/kubernetes")) {
            assert!(doc["apiVersion"].is_string(), "{}: apiVersion", f.display());
            assert!(doc["kind"].is_string(), "{}: kind", f.display());
            assert!(
                doc["metadata"]["namespace"].is_null(),
                "{}: manifests carry no namespace",
                f.display()
            );
        }
    }
}

#[test]
fn deployment_probes_the_admin_endpoints() {
    let docs = yaml_documents();
    let snap = configmap_snapshot(&docs);
    let admin = snap
        .admin
        .expect("the ConfigMap enables the admin listener");
    let d = kind(&docs, "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let port_number = |port: &Value| -> u64 {
        match port {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => c["ports"]
                .as_sequence()
                .expect("container ports")
                .iter()
                .find(|p| p["name"] == name.as_str())
                .map(|p| secs_of(&p["containerPort"], "containerPort"))
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => panic!("probe port {other:?}"),
        }
    };
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path, "{probe} path");
        assert_eq!(
            port_number(&get["port"]),
            u64::from(admin.port()),
            "{probe} goes to the admin listener of the config"
        );
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    for r in ["requests", "limits"] {
        assert!(
            c["resources"][r]["memory"].is_string(),
            "resources.{r}.memory"
        );
        assert!(c["resources"][r]["cpu"].is_string(), "resources.{r}.cpu");
    }
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(
        ann["prometheus.io/port"],
        admin.port().to_string().as_str(),
        "scraped on the admin port"
    );
}

#[test]
fn grace_period_outlasts_pre_stop_and_drain() {
    let docs = yaml_documents();
    let drain = configmap_snapshot(&docs).limits.drain_timeout;
    let spec = &kind(&docs, "Deployment")["spec"]["template"]["spec"];
    let grace = Duration::from_secs(secs_of(
        &spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    ));
    let pre_stop = &spec["containers"][0]["lifecycle"]["preStop"];
    let sleep = if let Some(cmd) = pre_stop["exec"]["command"].as_sequence() {
        assert_eq!(cmd[0], "sleep", "preStop runs sleep");
        str_of(&cmd[1], "sleep argument").parse().unwrap()
    } else {
        secs_of(&pre_stop["sleep"]["seconds"], "preStop sleep seconds")
    };
    assert!(sleep > 0, "preStop waits for endpoint removal");
    // The grace period runs from the start of preStop; SIGTERM (and the drain) come after it.
    assert!(
        grace > Duration::from_secs(sleep) + drain,
        "terminationGracePeriodSeconds {grace:?} must exceed preStop {sleep}s + drain_timeout {drain:?}"
    );
}

#[test]
fn service_and_budget_select_the_pods() {
    let docs = yaml_documents();
    let d = kind(&docs, "Deployment");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    let matches = |selector: &Value, what: &str| {
        let sel = selector.as_mapping().unwrap_or_else(|| panic!("{what}"));
        assert!(!sel.is_empty(), "{what} is not empty");
        for (k, v) in sel {
            assert_eq!(&pod_labels[k.as_str().unwrap()], v, "{what}: {k:?}");
        }
    };
    matches(&d["spec"]["selector"]["matchLabels"], "Deployment selector");
    matches(
        &kind(&docs, "Service")["spec"]["selector"],
        "Service selector",
    );
    matches(
        &kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget selector",
    );
    let target = &kind(&docs, "Service")["spec"]["ports"][0]["targetPort"];
    let ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap();
    assert!(
        ports
            .iter()
            .any(|p| &p["name"] == target || &p["containerPort"] == target),
        "Service targetPort {target:?} is a container port"
    );
}

fn unit_setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn systemd_stop_timeout_outlasts_the_default_drain() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/cutover.service")).unwrap();
    assert_eq!(unit_setting(&unit, "Type"), Some("simple"));
    assert_eq!(unit_setting(&unit, "KillSignal"), Some("SIGTERM"));
    assert_eq!(
        unit_setting(&unit, "ExecReload"),
        Some("/bin/kill -HUP $MAINPID")
    );
    let stop = unit_setting(&unit, "TimeoutStopSec").expect("TimeoutStopSec");
    let stop = cutover::values::parse_duration(stop).expect("TimeoutStopSec duration");
    let drain = cutover::state::Limits::default().drain_timeout;
    assert!(stop > drain, "TimeoutStopSec {stop:?} <= drain {drain:?}");
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let text = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "multi-stage build");
    assert!(instructions.iter().any(|l| l.starts_with("COPY --from=")));
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER instruction");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "numeric non-root USER (Kubernetes runAsNonRoot can only verify numbers): {user}"
    );
    let expose = instructions
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for port in ["8080", "9901"] {
        assert!(
            expose.split_whitespace().any(|p| p == port),
            "EXPOSE {port}"
        );
    }
}
