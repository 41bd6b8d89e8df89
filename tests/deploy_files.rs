//! The deployment files under `deploy/` work as shipped: every YAML/JSON file parses, each file
//! passes its real validator (kubernetes-validate, promtool, systemd-analyze, docker-compose;
//! `bash deploy/validators.sh` installs them, a missing one fails the test), every cutover config
//! passes `cutover check`, and what must stay in step does (probes and admin port, grace period and
//! drain, selectors, alert job and scrape jobs, PrometheusRule and alerts.yml).

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

/// Every document of every YAML file under `dir` (recursively), with the file it came from.
fn yaml_documents_under(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
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

/// The base Kubernetes manifests (deploy/kubernetes/*.yaml, not the overlays below it).
fn yaml_documents() -> Vec<(PathBuf, Value)> {
    let base = root().join("deploy/kubernetes");
    yaml_documents_under(&base)
        .into_iter()
        .filter(|(f, _)| f.parent() == Some(base.as_path()))
        .collect()
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
    // The plan and state volumes of the Deployment, as local directories.
    let plan = "/var/lib/cutover/plan/";
    let state = "/var/lib/cutover/state/";
    assert!(
        toml.contains(plan),
        "the ConfigMap reads the plan from {plan}"
    );
    std::fs::copy(
        root().join("config/redirects.csv"),
        dir.path().join("redirects.csv"),
    )
    .unwrap();
    let path = dir.path().join("cutover.toml");
    let toml = toml
        .replace(secrets, &local)
        .replace(plan, &local)
        .replace(state, &local);
    std::fs::write(&path, toml).unwrap();
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
    for (f, doc) in yaml_documents_under(&root().join("deploy")) {
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
    // A generic `kubernetes-pods` job would scrape these as job="kubernetes-pods", which the
    // alerts do not match: scraping goes through the ServiceMonitor or prometheus/kubernetes.yml.
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert!(
        ann["prometheus.io/scrape"].is_null(),
        "no prometheus.io annotations: their job name is not the alerts' job"
    );
    assert_eq!(
        port_number(&Value::String("admin".into())),
        u64::from(admin.port()),
        "the container port named admin (NetworkPolicy, ServiceMonitor) is the config's admin port"
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
    // `cutover upgrade` hands over to a child that reports READY=1 and MAINPID= itself.
    assert_eq!(unit_setting(&unit, "Type"), Some("notify"));
    assert_eq!(unit_setting(&unit, "NotifyAccess"), Some("all"));
    assert_eq!(unit_setting(&unit, "KillSignal"), Some("SIGTERM"));
    // The reload goes through the admin API and fails when the config is rejected; it must talk
    // to the process ExecStart runs, i.e. read the same config.
    let start = unit_setting(&unit, "ExecStart").expect("ExecStart");
    let config = start
        .split("--config ")
        .nth(1)
        .expect("ExecStart names --config");
    assert_eq!(
        unit_setting(&unit, "ExecReload"),
        Some(format!("/usr/local/bin/cutover reload --config {config}").as_str())
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

// ---------------------------------------------------------------------------------------------
// Real validators and the real binary.

/// Runs an external validator; a missing one fails with how to install it.
fn run_tool(program: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!("running {program}: {e}\n(`bash deploy/validators.sh` installs the validators)")
    })
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn cutover_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

/// `cutover check` on a config written into a temp dir with config/redirects.csv beside it.
fn cutover_check(toml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("config/redirects.csv"),
        dir.path().join("redirects.csv"),
    )
    .unwrap();
    let path = dir.path().join("cutover.toml");
    std::fs::write(&path, toml).unwrap();
    let out = run_tool(
        cutover_bin(),
        &["check", "--config", path.to_str().unwrap()],
        env,
    );
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

const DOCKER_ENV: &[(&str, &str)] = &[("CUTOVER_ADMIN_TOKEN", "a-token-for-the-deploy-test")];

#[test]
fn docker_config_passes_cutover_check() {
    let toml = std::fs::read_to_string(root().join("deploy/docker/cutover.toml")).unwrap();
    let (ok, out) = cutover_check(&toml, DOCKER_ENV);
    assert!(
        ok,
        "deploy/docker/cutover.toml fails `cutover check`:\n{out}"
    );
    assert!(
        out.contains("0.0.0.0:8080"),
        "listens on all interfaces:\n{out}"
    );
    // Without the token the admin listener on 0.0.0.0 is refused: the recipe must pass it.
    let (ok, out) = cutover_check(&toml, &[]);
    assert!(!ok && out.contains("CUTOVER_ADMIN_TOKEN"), "{out}");
}

/// The `docker run` lines of deploy/README.md: what they mount exists and is the checked config.
#[test]
fn readme_docker_recipe_mounts_the_checked_files() {
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    let run: String = readme
        .split("```sh")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("docker run") && b.contains("cutover:0.1.0"))
        .expect("a ```sh block with the `docker run ... cutover:0.1.0` recipe")
        .replace("\\\n", " ");
    let line = run
        .lines()
        .find(|l| l.contains("docker run") && l.contains("cutover:0.1.0"))
        .unwrap();
    let mounts: Vec<(&str, &str)> = line
        .split(" -v ")
        .skip(1)
        .map(|m| {
            let m = m.split_whitespace().next().unwrap().trim_matches('"');
            let mut parts = m.split(':');
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    for (host, _) in &mounts {
        let rel = host.trim_start_matches("$PWD/");
        assert!(
            root().join(rel).exists(),
            "the recipe mounts {host}, missing"
        );
    }
    let config = mounts
        .iter()
        .find(|(_, c)| *c == "/etc/cutover/cutover.toml")
        .expect("the recipe mounts /etc/cutover/cutover.toml");
    assert_eq!(config.0, "$PWD/deploy/docker/cutover.toml");
    assert!(
        mounts
            .iter()
            .any(|(_, c)| *c == "/etc/cutover/redirects.csv"),
        "the recipe mounts the redirect plan the config names"
    );
    assert!(
        line.contains("-e CUTOVER_ADMIN_TOKEN"),
        "passes the admin token"
    );
    for store in ["old-store", "new-store"] {
        assert!(
            run.contains(&format!("--name {store}")),
            "the recipe starts {store}, which the config points at"
        );
    }
}

#[test]
fn dockerfile_copies_only_what_the_build_context_has() {
    let text = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for line in text.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(
                root().join(src).exists(),
                "Dockerfile copies {src}, missing"
            );
            assert!(
                !ignored.iter().any(|i| src.starts_with(i)),
                "Dockerfile copies {src}, which .dockerignore leaves out"
            );
        }
    }
}

/// Strips the `[fleet]` table (and its comment lines just above) from a config.
fn without_fleet(toml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t == "[fleet]" || t.starts_with("[fleet.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Fleet configs wait for the `[fleet]` section (issue 20): until it exists they must be valid TOML
/// with `[fleet] etcd = [...]`, and everything else must pass `cutover check`.
#[test]
fn fleet_configs_pass_check_except_the_fleet_section() {
    for (file, env) in [
        ("deploy/kubernetes/fleet/cutover.toml", &[][..]),
        ("deploy/compose/cutover.fleet.toml", DOCKER_ENV),
    ] {
        let toml = std::fs::read_to_string(root().join(file)).unwrap();
        let parsed: toml::Table =
            toml::from_str(&toml).unwrap_or_else(|e| panic!("{file}: not TOML: {e}"));
        let etcd = parsed["fleet"]["etcd"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: [fleet] etcd is a list"));
        assert!(!etcd.is_empty(), "{file}: etcd endpoints");
        for e in etcd {
            let e = e.as_str().expect("endpoint string");
            assert!(e.starts_with("http://") || e.starts_with("https://"), "{e}");
        }
        let rest = without_fleet(&toml);
        let stripped: toml::Table = toml::from_str(&rest).unwrap();
        assert!(!stripped.contains_key("fleet"), "{file}: [fleet] stripped");
        let rest = if file.contains("kubernetes") {
            k8s_paths_local(&rest)
        } else {
            rest
        };
        let (ok, out) = cutover_check(&rest, env);
        assert!(ok, "{file} without [fleet] fails `cutover check`:\n{out}");
    }
}

/// The Kubernetes config's absolute paths (secrets, plan, state) turned into temp files.
fn k8s_paths_local(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap().keep();
    for name in ["cohort-key", "override-token", "admin-token"] {
        std::fs::write(dir.join(name), "a-test-secret-of-some-length").unwrap();
    }
    std::fs::copy(
        root().join("config/redirects.csv"),
        dir.join("redirects.csv"),
    )
    .unwrap();
    let local = format!("{}/", dir.display());
    toml.replace("/run/secrets/cutover/", &local)
        .replace("/var/lib/cutover/plan/", &local)
        .replace("/var/lib/cutover/state/", &local)
}

#[test]
fn fleet_overlay_replaces_the_base_config_and_scales_out() {
    let fleet = root().join("deploy/kubernetes/fleet");
    let k: Value =
        serde_norway::from_str(&std::fs::read_to_string(fleet.join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(k["resources"][0], "../", "the overlay builds on the base");
    let gen = &k["configMapGenerator"][0];
    assert_eq!(
        gen["name"],
        str_of(
            &kind(&yaml_documents(), "ConfigMap")["metadata"]["name"],
            "name"
        )
    );
    assert_eq!(gen["behavior"], "replace");
    assert_eq!(
        gen["files"][0], "cutover.toml",
        "the key the Deployment reads"
    );
    for p in k["patches"].as_sequence().unwrap() {
        let path = fleet.join(str_of(&p["path"], "patch path"));
        let patch: Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let base = kind(&yaml_documents(), str_of(&patch["kind"], "patch kind")).clone();
        assert_eq!(
            patch["metadata"]["name"],
            base["metadata"]["name"],
            "{}",
            path.display()
        );
        if patch["kind"] == "Deployment" {
            assert!(
                secs_of(&patch["spec"]["replicas"], "replicas") >= 3,
                "a fleet"
            );
        }
    }
    // The base is the single-replica mode: admin changes act on one process.
    assert_eq!(kind(&yaml_documents(), "Deployment")["spec"]["replicas"], 1);
}

#[test]
fn every_kustomization_lists_existing_files() {
    let mut files = Vec::new();
    files_under(&root().join("deploy/kubernetes"), &mut files);
    let mut listed = 0;
    for k in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        let dir = k.parent().unwrap();
        let v: Value = serde_norway::from_str(&std::fs::read_to_string(k).unwrap()).unwrap();
        let mut names: Vec<&str> = Vec::new();
        for r in v["resources"].as_sequence().into_iter().flatten() {
            names.push(str_of(r, "resource"));
        }
        for p in v["patches"].as_sequence().into_iter().flatten() {
            names.push(str_of(&p["path"], "patch"));
        }
        for g in v["configMapGenerator"].as_sequence().into_iter().flatten() {
            for f in g["files"].as_sequence().into_iter().flatten() {
                names.push(str_of(f, "generator file"));
            }
        }
        for n in names {
            assert!(dir.join(n).exists(), "{} lists {n}, missing", k.display());
            listed += 1;
        }
        // Every manifest beside a kustomization is applied by it (nothing silently left out).
        for f in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            let name = f.file_name().unwrap().to_str().unwrap();
            if extension(&f) == "yaml" && name != "kustomization.yaml" {
                let in_list = v["resources"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|r| r == name)
                    || v["patches"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|p| p["path"] == name);
                assert!(in_list, "{} does not apply {name}", k.display());
            }
        }
    }
    assert!(listed >= 10, "base, monitoring and fleet kustomizations");
}

/// `kubernetes-validate --strict` (real Kubernetes OpenAPI schemas, unknown fields rejected) on
/// every core manifest; the operator's CRDs have no schema there and are checked below instead.
#[test]
fn kubernetes_manifests_pass_the_schema_validator() {
    let mut files = Vec::new();
    files_under(&root().join("deploy/kubernetes"), &mut files);
    let mut core = Vec::new();
    for f in files.iter().filter(|f| extension(f) == "yaml") {
        let v: Value = serde_norway::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let api = str_of(&v["apiVersion"], "apiVersion");
        let patch = f.parent().unwrap().ends_with("fleet") && v["kind"] != "Kustomization";
        if api.starts_with("kustomize.") || api.starts_with("monitoring.coreos.com") || patch {
            continue;
        }
        core.push(f.to_str().unwrap().to_string());
    }
    assert!(core.len() >= 6, "{core:?}");
    let mut args = vec!["--strict", "--no-warn"];
    args.extend(core.iter().map(String::as_str));
    let out = run_tool("kubernetes-validate", &args, &[]);
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{report}");
    for f in &core {
        assert!(
            report
                .lines()
                .any(|l| l.contains(f.as_str()) && l.contains("passed")),
            "{f} was not validated:\n{report}"
        );
    }
    // The validator is strict: a misspelt field in a copy of the Deployment fails it.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("deployment.yaml");
    let d = std::fs::read_to_string(root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    std::fs::write(&broken, d.replace("readinessProbe:", "readynessProbe:")).unwrap();
    let out = run_tool(
        "kubernetes-validate",
        &["--strict", broken.to_str().unwrap()],
        &[],
    );
    assert!(
        !out.status.success(),
        "a broken manifest passes kubernetes-validate"
    );
}

fn monitoring_doc(file: &str) -> Value {
    let path = root().join("deploy/kubernetes/monitoring").join(file);
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The job name of the `CutoverDown` alert (`up{job="..."}`).
fn alert_job() -> String {
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let down = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| r["alert"] == "CutoverDown")
        .expect("a CutoverDown alert");
    let expr = str_of(&down["expr"], "expr");
    let job = expr
        .split("job=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("CutoverDown matches a job");
    job.to_string()
}

/// ServiceMonitor and PrometheusRule (Prometheus Operator CRDs, no schema in kubernetes-validate):
/// the monitor finds the admin port of the pods and labels them with the alerts' job; the rules are
/// alerts.yml verbatim and pass `promtool check rules`.
#[test]
fn operator_objects_scrape_the_admin_port_and_carry_the_shipped_rules() {
    let sm = monitoring_doc("servicemonitor.yaml");
    let svc = monitoring_doc("admin-service.yaml");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    let labels = &svc["metadata"]["labels"];
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(
            &labels[k.as_str().unwrap()],
            v,
            "ServiceMonitor selects the admin Service"
        );
    }
    let job_label = str_of(&sm["spec"]["jobLabel"], "jobLabel");
    assert_eq!(
        labels[job_label],
        alert_job().as_str(),
        "scraped as the job the alerts match"
    );
    let endpoints = sm["spec"]["endpoints"].as_sequence().unwrap();
    assert!(!endpoints.is_empty());
    let d = kind(&yaml_documents(), "Deployment").clone();
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(
            &pod_labels[k.as_str().unwrap()],
            v,
            "admin Service selects the pods"
        );
    }
    for e in endpoints {
        assert_eq!(e["path"], "/metrics");
        let port = svc["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == e["port"])
            .unwrap_or_else(|| panic!("ServiceMonitor port {:?} is not on the Service", e["port"]));
        assert_eq!(port["targetPort"], "admin", "the pods' admin port");
    }

    let pr = monitoring_doc("prometheusrule.yaml");
    assert_eq!(pr["kind"], "PrometheusRule");
    let alerts: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        pr["spec"]["groups"], alerts["groups"],
        "PrometheusRule differs from deploy/prometheus/alerts.yml (regenerate it, see its header)"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, serde_norway::to_string(&pr["spec"]).unwrap()).unwrap();
    let out = run_tool(
        "promtool",
        &["check", "rules", rules.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn network_policy_admits_only_prometheus_to_the_admin_port() {
    let docs = yaml_documents();
    let np = kind(&docs, "NetworkPolicy");
    let d = kind(&docs, "Deployment");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in np["spec"]["podSelector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            &pod_labels[k.as_str().unwrap()],
            v,
            "NetworkPolicy selects the pods"
        );
    }
    let ports: Vec<&Value> = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    let rules = np["spec"]["ingress"].as_sequence().unwrap();
    let mut admin_rules = 0;
    for r in rules {
        for p in r["ports"].as_sequence().unwrap() {
            assert!(
                ports.contains(&&p["port"]),
                "policy port {:?} is a container port",
                p["port"]
            );
            if p["port"] == "admin" {
                admin_rules += 1;
                assert!(
                    r["from"].as_sequence().is_some_and(|f| !f.is_empty()),
                    "the admin port is never open to everyone"
                );
            }
        }
    }
    assert_eq!(admin_rules, 1, "one rule admits the admin port");
}

#[test]
fn configmap_trusts_the_ingress_and_reads_the_plan_from_a_volume() {
    let docs = yaml_documents();
    let snap = configmap_snapshot(&docs);
    assert!(
        snap.headers.trust_forwarded,
        "behind a TLS-terminating Ingress"
    );
    let d = kind(&docs, "Deployment");
    let spec = &d["spec"]["template"]["spec"];
    let volumes = spec["volumes"].as_sequence().unwrap();
    let cm = kind(&docs, "ConfigMap");
    let toml: toml::Table = toml::from_str(str_of(&cm["data"]["cutover.toml"], "toml")).unwrap();
    let plan = toml["redirects"][0]["file"].as_str().unwrap();
    let mount = spec["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| plan.starts_with(&format!("{}/", str_of(&m["mountPath"], "mountPath"))))
        .unwrap_or_else(|| panic!("{plan} is on a mounted volume"));
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert!(
        volume["configMap"].is_null(),
        "the plan is not bound by a ConfigMap's 1 MiB"
    );
    let init = spec["initContainers"]
        .as_sequence()
        .expect("an initContainer fills the plan volume")
        .iter()
        .find(|c| {
            c["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|m| m["name"] == mount["name"] && m["readOnly"] != true)
        })
        .expect("an initContainer writes the plan volume");
    let cmd: Vec<&str> = init["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd.last(),
        Some(&plan),
        "it writes the file the config reads"
    );
    // What it copies is in the image (the Dockerfile puts it there).
    let dockerfile = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!(" {}", cmd[cmd.len() - 2])),
        "the image has {}",
        cmd[cmd.len() - 2]
    );
    // The state file is on a writable volume (the root filesystem is read-only).
    let state = toml["admin"]["state_file"]
        .as_str()
        .expect("admin.state_file");
    assert!(spec["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(
            |m| state.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap()))
                && m["readOnly"] != true
        ));
}

/// Every Prometheus config shipped: `promtool check config` (with its rule files), an `alerting`
/// section, and only the job the alerts match.
#[test]
fn prometheus_configs_pass_promtool_and_scrape_the_alerts_job() {
    let job = alert_job();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("deploy/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    for file in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/kubernetes.yml",
        "deploy/compose/prometheus.yml",
        "deploy/compose/prometheus.fleet.yml",
    ] {
        let text_in = std::fs::read_to_string(root().join(file)).unwrap();
        let v: Value = serde_norway::from_str(&text_in).unwrap();
        assert!(
            v["alerting"]["alertmanagers"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty()),
            "{file}: an alerting section"
        );
        assert_eq!(
            v["rule_files"][0], "alerts.yml",
            "{file} loads the shipped rules"
        );
        for sc in v["scrape_configs"].as_sequence().unwrap() {
            assert_eq!(
                sc["job_name"],
                job.as_str(),
                "{file}: the job CutoverDown matches"
            );
        }
        let copy = dir.path().join("prometheus.yml");
        std::fs::write(&copy, &text_in).unwrap();
        let mut out = run_tool(
            "promtool",
            &["check", "config", copy.to_str().unwrap()],
            &[],
        );
        let report = text(&out.stdout) + &text(&out.stderr);
        if !out.status.success() && report.contains("field kubernetes_sd_configs not found") {
            // Debian's promtool is built without Kubernetes discovery: check the rest as written.
            let mut v = v.clone();
            for sc in v["scrape_configs"].as_sequence_mut().unwrap() {
                let m = sc.as_mapping_mut().unwrap();
                assert!(m.remove("kubernetes_sd_configs").is_some());
                let targets: Value =
                    serde_norway::from_str("[{targets: ['10.0.0.1:9901']}]").unwrap();
                m.insert("static_configs".into(), targets);
            }
            std::fs::write(&copy, serde_norway::to_string(&v).unwrap()).unwrap();
            out = run_tool(
                "promtool",
                &["check", "config", copy.to_str().unwrap()],
                &[],
            );
        }
        assert!(
            out.status.success(),
            "promtool check config {file}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// The unit with the built binary in place of /usr/local/bin/cutover, checked by systemd itself.
fn systemd_verify(unit: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cutover.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/cutover", cutover_bin())).unwrap();
    let out = run_tool(
        "systemd-analyze",
        &["verify", "--man=no", path.to_str().unwrap()],
        &[],
    );
    let report = text(&out.stdout) + &text(&out.stderr);
    (out.status.success() && report.trim().is_empty(), report)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/cutover.service")).unwrap();
    let (ok, report) = systemd_verify(&unit);
    assert!(ok, "systemd-analyze verify:\n{report}");
    let (ok, _) = systemd_verify(&unit.replace("NotifyAccess=all", "NotifyAcess=all"));
    assert!(!ok, "systemd-analyze verify accepts a misspelt key");
}

fn compose_config(files: &[&str]) -> (bool, String) {
    let mut args = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.push("config");
    let out = run_tool("docker-compose", &args, &[]);
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn compose_files_pass_docker_compose_config() {
    let base = root().join("deploy/compose/compose.yaml");
    let fleet = root().join("deploy/compose/compose.fleet.yaml");
    let (base, fleet) = (base.to_str().unwrap(), fleet.to_str().unwrap());
    for files in [&[base][..], &[base, fleet][..]] {
        let (ok, out) = compose_config(files);
        assert!(ok, "docker-compose config {files:?}:\n{out}");
        let v: Value = serde_norway::from_str(&out).unwrap();
        let services = v["services"].as_mapping().unwrap();
        for s in ["cutover", "old-store", "new-store", "prometheus", "grafana"] {
            assert!(services.contains_key(s), "{files:?}: service {s}");
        }
        let mut mounted = Vec::new();
        for (name, s) in services {
            for vol in s["volumes"].as_sequence().into_iter().flatten() {
                let vol = str_of(vol, "volume");
                if let Some(src) = vol.split(':').next().filter(|s| s.starts_with('/')) {
                    assert!(Path::new(src).exists(), "{name:?} mounts {src}, missing");
                    mounted.push(src.to_string());
                }
            }
        }
        for shipped in [
            "deploy/prometheus/alerts.yml",
            "deploy/grafana/cutover.json",
            "config/redirects.csv",
        ] {
            let p = root().join(shipped);
            assert!(
                mounted.iter().any(|m| Path::new(m) == p),
                "{files:?} mounts {shipped}"
            );
        }
        if files.len() == 2 {
            assert!(services.contains_key("etcd") && services.contains_key("cutover-3"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("compose.yaml");
    let text_in = std::fs::read_to_string(base).unwrap();
    std::fs::write(
        &broken,
        text_in.replace("    restart: unless-stopped", "    restrat: unless-stopped"),
    )
    .unwrap();
    let (ok, _) = compose_config(&[broken.to_str().unwrap()]);
    assert!(!ok, "docker-compose config accepts an unknown key");
}

/// A `cutover serve` started by a test under a fake systemd notification socket, stopped on drop.
struct Served {
    child: std::process::Child,
    dir: tempfile::TempDir,
    notify: std::os::unix::net::UnixDatagram,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

impl Served {
    /// config/demo.toml on free ports, with its plan, served with `NOTIFY_SOCKET` set.
    fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let demo = std::fs::read_to_string(root().join("config/demo.toml")).unwrap();
        let config = demo
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", free_port()))
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{}", free_port()));
        std::fs::write(dir.path().join("cutover.toml"), config).unwrap();
        std::fs::copy(
            root().join("config/redirects.csv"),
            dir.path().join("redirects.csv"),
        )
        .unwrap();
        let sock = dir.path().join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let child = std::process::Command::new(cutover_bin())
            .args(["serve", "--config"])
            .arg(dir.path().join("cutover.toml"))
            .env("NOTIFY_SOCKET", &sock)
            .env("CUTOVER_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Served { child, dir, notify }
    }

    fn config(&self) -> String {
        self.dir.path().join("cutover.toml").display().to_string()
    }

    /// The next notification containing `what` (generous deadline: the recv timeout).
    fn wait_for(&self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .notify
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no `{what}` on NOTIFY_SOCKET: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(what) {
                return msg;
            }
        }
    }

    /// The unit's ExecReload, with the binary and config of this test.
    fn exec_reload(&self) -> (bool, String) {
        let unit = std::fs::read_to_string(root().join("deploy/systemd/cutover.service")).unwrap();
        let reload = unit_setting(&unit, "ExecReload").unwrap();
        let args: Vec<String> = reload
            .split_whitespace()
            .skip(1)
            .map(|a| {
                if a == "/etc/cutover/cutover.toml" {
                    self.config()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let out = run_tool(
            cutover_bin(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        );
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    }
}

/// `Type=notify` waits for READY=1; the unit's `ExecReload` fails on a rejected config.
#[test]
fn serve_notifies_readiness_and_exec_reload_reports_a_rejected_config() {
    let served = Served::start();
    served.wait_for("READY=1");
    let (ok, out) = served.exec_reload();
    assert!(ok, "ExecReload on a good config:\n{out}");
    let path = served.config();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("new_share = 10", "new_share = 250")).unwrap();
    let (ok, out) = served.exec_reload();
    assert!(!ok, "ExecReload must fail on a rejected config:\n{out}");
    assert!(
        out.contains("rejected") && out.contains("new_share"),
        "says why:\n{out}"
    );
    std::fs::write(&path, good).unwrap();
    let (ok, out) = served.exec_reload();
    assert!(ok, "ExecReload after the fix:\n{out}");
}

/// After `cutover upgrade` under `Type=notify`/`NotifyAccess=all`, systemd must hear READY=1 and
/// MAINPID=<successor> and nothing that stops the unit: a STOPPING=1 from the draining
/// predecessor would make systemd kill the successor after TimeoutStopSec (`App::drain` sends it
/// only when no successor took over).
#[test]
fn upgrade_under_systemd_notify_never_reports_stopping() {
    let mut served = Served::start();
    served.wait_for("READY=1");
    let old = served.child.id();
    let out = run_tool(
        cutover_bin(),
        &["upgrade", "--config", &served.config()],
        &[],
    );
    assert!(
        out.status.success(),
        "cutover upgrade:\n{}",
        text(&out.stderr)
    );
    let ready = served.wait_for("MAINPID=");
    let new: u32 = ready
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new, old);
    let stopped = served.child.wait().unwrap();
    // Everything the predecessor sent is in the socket once it has exited; read it before the
    // successor is stopped, whose own STOPPING=1 is legitimate.
    served.notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut after = Vec::new();
    while let Ok(n) = served.notify.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = std::process::Command::new("kill")
        .arg(new.to_string())
        .status();
    assert!(
        stopped.success(),
        "the predecessor drains and exits cleanly"
    );
    for msg in &after {
        assert!(
            !msg.contains("STOPPING=1"),
            "after the handover systemd got {msg:?}"
        );
    }
}
