use super::*;

fn parse(text: &str) -> RolloutConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("parse: {e}"))
}

const GOOD: &str = r#"
    steps = [1, 5, "25%", 50, 100]
    min_hold = "10m"
    interval = "1m"
    window = "5m"
    min_requests = 200
    failure_limit = 3
    action = "rollback"
    evacuate_new = true
    inconclusive_timeout = "15m"
    [gates.error_ratio]
    max_vs_old = 2.0
    max_delta = 0.005
    max = 0.05
    [gates.error_ratio.routes.checkout]
    max_vs_old = 1.2
    [gates.p99]
    max_vs_old = 1.5
    max_delta = 0.1
    [source]
    kind = "prometheus"
    url = "http://127.0.0.1:9090/"
    timeout = "2s"
    [webhook]
    url = "https://chat.example/hooks/x"
    retries = 2
"#;

#[test]
fn a_full_plan_validates_with_inherited_route_limits() {
    let plan = parse(GOOD).validate(Some(&["checkout", "blog"])).unwrap();
    assert_eq!(plan.steps_bp, vec![100, 500, 2500, 5000, 10000]);
    assert_eq!(plan.interval_ms, 60_000);
    assert_eq!(plan.action, FailureAction::Rollback { evacuate_new: true });
    assert_eq!(plan.gates.len(), 2);
    let checkout = plan.gates[0].routes["checkout"];
    assert_eq!(checkout.max_vs_old, Some(1.2));
    assert_eq!(checkout.max_delta, Some(0.005), "inherited from the gate");
    assert_eq!(checkout.max, Some(0.05));
    match &plan.source {
        Source::Prometheus {
            url, timeout_ms, ..
        } => {
            assert_eq!(url, "http://127.0.0.1:9090");
            assert_eq!(*timeout_ms, 2000);
        }
        other => panic!("{other:?}"),
    }
    let w = plan.webhook.unwrap();
    assert_eq!(w.retries, 2);
    assert_eq!(w.timeout, DEFAULT_WEBHOOK_TIMEOUT);
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let cfg = parse(
        r#"
        steps = [5, 5, 0, 101, "abc"]
        min_hold = "0s"
        interval = "0s"
        window = "0s"
        min_requests = 0
        failure_limit = 0
        action = "pause"
        evacuate_new = true
        inconclusive_timeout = "0s"
        [gates.error_ratio]
        max_vs_old = -1.0
        [gates.p95]
        [gates.p99]
        max = 1.0
        [gates.p99.routes.nope]
        max_delta = nan
        [source]
        kind = "prometheus"
        url = "ftp://x"
        queries = { requests = " " }
        [webhook]
        url = "/relative"
        timeout = "0s"
    "#,
    );
    let errs = cfg.validate(Some(&["checkout"])).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for expected in [
        "rollout.steps[1]",
        "rollout.steps[2]",
        "rollout.steps[3]",
        "rollout.steps[4]",
        "rollout.interval",
        "rollout.window",
        "rollout.inconclusive_timeout",
        "rollout.min_requests",
        "rollout.failure_limit",
        "rollout.evacuate_new",
        "rollout.gates.error_ratio.max_vs_old",
        "rollout.gates.p95",
        "rollout.gates.p99.routes.nope",
        "rollout.gates.p99.routes.nope.max_delta",
        "rollout.source.url",
        "rollout.source.queries.requests",
        "rollout.webhook.url",
        "rollout.webhook.timeout",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing in {errs:#?}"
        );
    }
    let text = PlanErrors(errs).to_string();
    assert!(
        text.contains("rollout.steps[1]: 5% is not above the previous step 5%"),
        "{text}"
    );
    assert!(
        text.contains("no route is named \"nope\" (routes: checkout)"),
        "{text}"
    );
}

#[test]
fn no_steps_and_no_gates_are_errors() {
    let cfg = parse(
        r#"steps = []
        min_hold = "1m"
        interval = "1m"
        window = "1m"
        min_requests = 1
        failure_limit = 1
        inconclusive_timeout = "1m""#,
    );
    let errs = cfg.validate(None).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["rollout.steps", "rollout.gates"]);
}

#[test]
fn unknown_fields_are_rejected_by_the_parser() {
    let err = toml::from_str::<RolloutConfig>("stepz = [1]").unwrap_err();
    assert!(err.to_string().contains("stepz"), "{err}");
    let err = toml::from_str::<SourceConfig>("kind = \"local\"\nuri = \"x\"").unwrap_err();
    assert!(err.to_string().contains("uri"), "{err}");
    let err = toml::from_str::<SourceConfig>("kind = \"graphite\"").unwrap_err();
    assert!(err.to_string().contains("graphite"), "{err}");
}

#[test]
fn fingerprint_is_stable_and_ignores_the_webhook() {
    let a = parse(GOOD).validate(None).unwrap();
    let b = parse(GOOD).validate(None).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
    // `[webhook]` is GOOD's last table: everything before it is the same plan without one.
    let no_hook = parse(GOOD.split("[webhook]").next().unwrap());
    let no_hook = no_hook.validate(None).unwrap();
    assert!(no_hook.webhook.is_none());
    assert_eq!(no_hook.fingerprint(), a.fingerprint());
    let edited = parse(&GOOD.replace("max_vs_old = 1.5", "max_vs_old = 1.6"))
        .validate(None)
        .unwrap();
    assert_ne!(edited.fingerprint(), a.fingerprint());
    let steps = parse(&GOOD.replace("[1, 5,", "[2, 5,"))
        .validate(None)
        .unwrap();
    assert_ne!(steps.fingerprint(), a.fingerprint());
}

#[test]
fn source_fields_must_match_its_kind() {
    let base = GOOD.split("[source]").next().unwrap().to_string();
    let local = parse(&format!(
        "{base}[source]\nkind = \"local\"\nurl = \"http://x\"\n"
    ));
    let errs = local.validate(None).unwrap_err().0;
    assert_eq!(errs[0].field, "rollout.source.url");
    assert!(errs[0]
        .problem
        .contains("only applies with kind = \"prometheus\""));
    let prom = parse(&format!("{base}[source]\nkind = \"prometheus\"\n"));
    let errs = prom.validate(None).unwrap_err().0;
    assert_eq!(errs[0].field, "rollout.source.url");
    assert!(errs[0].problem.contains("is required"), "{errs:?}");
    let default = parse(&base).validate(None).unwrap();
    assert_eq!(default.source, Source::Local);
}

#[test]
fn fingerprint_is_pinned() {
    // Persisted rollouts are tied to this value: if it changes (a field added to `Plan`, a
    // different serialization), every rollout in progress is dropped on upgrade. Change it
    // only on purpose, and say so in the release notes.
    let plan = parse(GOOD).validate(None).unwrap();
    assert_eq!(plan.fingerprint(), "c368d3374d89eb17");
}

#[test]
fn percent_formats_basis_points() {
    assert_eq!(percent(2500), "25%");
    assert_eq!(percent(1), "0.01%");
    assert_eq!(percent(1250), "12.5%");
    assert_eq!(percent(10_000), "100%");
}
