//! State machine tests, driven by a fake clock (unix ms) and figures the test writes.

use super::engine::{Action, Engine, EventKind, Phase, RolloutState};
use super::gate::GateResult;
use super::measure::{PairFigures, Reading, SideFigures, WindowFigures};
use super::plan::{Plan, RolloutConfig};

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;

fn plan_with(extra: &str) -> Plan {
    let text = format!(
        r#"
        steps = [1, 5, 25, 50, 100]
        min_hold = "5m"
        interval = "1m"
        window = "5m"
        min_requests = 100
        failure_limit = 3
        inconclusive_timeout = "10m"
        {extra}
        [gates.error_ratio]
        max_vs_old = 2.0
        max_delta = 0.01
        [gates.error_ratio.routes.checkout]
        max_vs_old = 1.0
        max_delta = 0.0
        "#
    );
    let cfg: RolloutConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    cfg.validate(None).unwrap_or_else(|e| panic!("{e}"))
}

fn plan() -> Plan {
    plan_with("")
}

fn side(requests: f64, errors: f64) -> SideFigures {
    SideFigures {
        requests: Some(requests),
        errors: Some(errors),
        not_found: Some(0.0),
        latency: None,
    }
}

/// Both sides with 1,000 requests; `new_errors` on new, 10 on old; checkout mirrors overall.
fn figures(new_errors: f64) -> Reading {
    let pair = PairFigures {
        old: side(1000.0, 10.0),
        new: side(1000.0, new_errors),
    };
    Reading::Figures(WindowFigures {
        overall: pair.clone(),
        routes: [("checkout".to_string(), pair)].into(),
    })
}

fn good() -> Reading {
    figures(10.0)
}

fn bad() -> Reading {
    figures(200.0)
}

fn shares(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetShare(bp) => Some(*bp),
            _ => None,
        })
        .collect()
}

fn kinds(actions: &[Action]) -> Vec<EventKind> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(e) => Some(e.kind.clone()),
            _ => None,
        })
        .collect()
}

/// Drives the engine second by second until `until`, feeding `reading(now)` whenever due;
/// returns every action with its time.
fn drive(
    e: &mut Engine,
    from: u64,
    until: u64,
    reading: impl Fn(u64) -> Reading,
) -> Vec<(u64, Action)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= until {
        if e.due(now) {
            for a in e.tick(now, &reading(now)) {
                out.push((now, a));
            }
        }
        now += 1000;
    }
    out
}

#[test]
fn steps_advance_after_the_hold_when_new_is_as_good_as_old() {
    let mut e = Engine::new(plan());
    let started = e.start(T0).unwrap();
    assert_eq!(shares(&started), vec![100]);
    assert_eq!(kinds(&started), vec![EventKind::Started]);
    assert_eq!(e.state().phase, Phase::Running);
    // Passing, but the 5 minute hold is not over at 4 minutes.
    let early = drive(&mut e, T0, T0 + 4 * MIN, |_| good());
    assert!(early.is_empty(), "{early:?}");
    let acts = drive(&mut e, T0 + 4 * MIN + 1000, T0 + 5 * MIN, |_| good());
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0], (T0 + 5 * MIN, Action::SetShare(500)));
    assert_eq!(e.state().step, 1);
    assert_eq!(e.state().step_since_ms, T0 + 5 * MIN);
    // The rest of the plan: each step held 5 minutes, then completion.
    let rest = drive(&mut e, T0 + 5 * MIN + 1000, T0 + 60 * MIN, |_| good());
    let all: Vec<Action> = rest.into_iter().map(|(_, a)| a).collect();
    assert_eq!(shares(&all), vec![2500, 5000, 10_000]);
    assert_eq!(kinds(&all).last(), Some(&EventKind::Completed));
    assert_eq!(e.state().phase, Phase::Completed);
    assert_eq!(e.step_share_bp(), 10_000);
    assert!(
        !e.due(T0 + 61 * MIN),
        "a completed rollout does not evaluate"
    );
}

#[test]
fn a_failing_new_rolls_back_within_interval_times_limit_plus_one_interval() {
    let mut e = Engine::new(plan_with("evacuate_new = true"));
    e.start(T0).unwrap();
    // New starts failing at an instant not aligned with evaluations.
    let fail_from = T0 + 2 * MIN + 17_000;
    let acts = drive(&mut e, T0, T0 + 30 * MIN, |now| {
        if now >= fail_from {
            bad()
        } else {
            good()
        }
    });
    let (at, _) = acts
        .iter()
        .find(|(_, a)| matches!(a, Action::Rollback { .. }))
        .expect("rolled back");
    assert!(
        *at <= fail_from + 3 * MIN + MIN,
        "rolled back {}s after the failure began",
        (at - fail_from) / 1000
    );
    assert!(
        *at >= fail_from + 2 * MIN,
        "three failed evaluations are needed"
    );
    assert!(acts.contains(&(*at, Action::Rollback { evacuate_new: true })));
    assert_eq!(e.state().phase, Phase::RolledBack);
    assert_eq!(e.step_share_bp(), 0);
    let reason = e.state().reason.clone().unwrap();
    assert!(
        reason.contains("3 failed evaluations in a row at step 1/5 (1%)"),
        "{reason}"
    );
    assert!(
        reason.contains("error_ratio new 0.2000 vs old 0.0100"),
        "{reason}"
    );
    let kinds: Vec<EventKind> = kinds(&acts.into_iter().map(|(_, a)| a).collect::<Vec<_>>());
    assert_eq!(kinds, vec![EventKind::RolledBack]);
}

#[test]
fn a_per_route_gate_fails_alone() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    let checkout_bad = || {
        let mut f = WindowFigures {
            overall: PairFigures {
                old: side(10_000.0, 100.0),
                new: side(10_000.0, 110.0),
            },
            ..Default::default()
        };
        f.routes.insert(
            "checkout".into(),
            PairFigures {
                old: side(1000.0, 0.0),
                new: side(1000.0, 5.0),
            },
        );
        Reading::Figures(f)
    };
    let acts = drive(&mut e, T0, T0 + 10 * MIN, |_| checkout_bad());
    assert!(acts
        .iter()
        .any(|(_, a)| matches!(a, Action::Rollback { .. })));
    let v = &e.state().last_verdicts;
    assert_eq!(v[0].result, GateResult::Pass);
    assert_eq!(v[1].gate, "error_ratio/checkout");
    assert_eq!(v[1].result, GateResult::Fail);
}

#[test]
fn a_pass_between_failures_resets_the_count() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    let pattern = [true, true, false, true, true, false, true, true];
    for (i, fail) in pattern.iter().enumerate() {
        let now = T0 + (i as u64 + 1) * MIN;
        let acts = e.tick(now, &if *fail { bad() } else { good() });
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Rollback { .. })),
            "rolled back at evaluation {i}"
        );
    }
    assert_eq!(e.state().consecutive_failures, 2);
}

#[test]
fn too_few_requests_hold_the_step_without_counting() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    let thin = || {
        let pair = PairFigures {
            old: side(3.0, 0.0),
            new: side(3.0, 3.0),
        };
        Reading::Figures(WindowFigures {
            overall: pair.clone(),
            routes: [("checkout".to_string(), pair)].into(),
        })
    };
    let acts = drive(&mut e, T0, T0 + 60 * MIN, |_| thin());
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(e.state().phase, Phase::Running);
    assert_eq!(e.state().step, 0);
    assert_eq!(e.state().consecutive_failures, 0);
    assert!(e
        .state()
        .last_verdicts
        .iter()
        .all(|v| v.result == GateResult::Insufficient));
    // Values of both sides are kept even when insufficient.
    assert_eq!(e.state().last_verdicts[0].new, Some(1.0));
    let counted = e.verdicts_total()[&("error_ratio".to_string(), GateResult::Insufficient)];
    assert_eq!(counted, 60);
}

#[test]
fn advise_mode_reports_and_changes_nothing() {
    let mut e = Engine::new(plan_with("mode = \"advise\""));
    let started = e.start(T0).unwrap();
    assert!(shares(&started).is_empty());
    assert_eq!(e.state().phase, Phase::Advising);
    let acts = drive(&mut e, T0, T0 + 6 * MIN, |_| good());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert!(shares(&all).is_empty(), "{all:?}");
    assert_eq!(kinds(&all), vec![EventKind::WouldAdvance]);
    match &all[0] {
        Action::Notify(ev) => {
            assert!(ev.advise);
            assert_eq!(ev.share_bp, 500);
            assert!(
                ev.message.contains("would advance to step 2/5 (5%)"),
                "{}",
                ev.message
            );
        }
        other => panic!("{other:?}"),
    }
    let acts = drive(&mut e, T0 + 6 * MIN + 1000, T0 + 20 * MIN, |_| bad());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert!(
        all.iter().all(|a| matches!(a, Action::Notify(_))),
        "advise emits only notifications: {all:?}"
    );
    assert!(kinds(&all).contains(&EventKind::WouldRollBack));
    assert_eq!(e.state().phase, Phase::Advising);
    // Aborting advice changes nothing either.
    let aborted = e.abort(T0 + 21 * MIN).unwrap();
    assert_eq!(kinds(&aborted), vec![EventKind::Aborted]);
    assert_eq!(aborted.len(), 1);
    assert_eq!(e.state().phase, Phase::Idle);
}

#[test]
fn failures_with_the_pause_action_pause() {
    let mut e = Engine::new(plan_with("action = \"pause\""));
    e.start(T0).unwrap();
    let acts = drive(&mut e, T0, T0 + 10 * MIN, |_| bad());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert!(matches!(&all[0], Action::Pause(r) if r.contains("failed evaluations")));
    assert_eq!(kinds(&all), vec![EventKind::Paused]);
    assert_eq!(e.state().phase, Phase::Paused);
    assert_eq!(e.step_share_bp(), 100, "a pause keeps the share");
}

#[test]
fn operator_commands_pause_resume_promote_abort() {
    let mut e = Engine::new(plan());
    assert!(e.pause(T0).is_err());
    assert!(e.resume(T0).is_err());
    assert!(e.promote(T0).is_err());
    let err = e.abort(T0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot abort the rollout: it is idle (nothing is in progress)"
    );
    e.start(T0).unwrap();
    assert!(e.start(T0).is_err(), "start twice");
    let p = e.pause(T0 + MIN).unwrap();
    assert_eq!(kinds(&p), vec![EventKind::Paused]);
    assert_eq!(e.state().phase, Phase::Paused);
    // Paused: no evaluation, however long and however good.
    assert!(drive(&mut e, T0 + MIN, T0 + 30 * MIN, |_| good()).is_empty());
    assert!(e.pause(T0 + 30 * MIN).is_err());
    let r = e.resume(T0 + 30 * MIN).unwrap();
    assert_eq!(kinds(&r), vec![EventKind::Resumed]);
    assert_eq!(e.state().phase, Phase::Running);
    assert_eq!(e.state().next_evaluation_ms, Some(T0 + 31 * MIN));
    let p = e.promote(T0 + 30 * MIN).unwrap();
    assert_eq!(shares(&p), vec![500]);
    assert_eq!(kinds(&p), vec![EventKind::Promoted]);
    assert_eq!(e.state().step_since_ms, T0 + 30 * MIN);
    // Promote from paused resumes at the next step.
    e.pause(T0 + 31 * MIN).unwrap();
    assert_eq!(shares(&e.promote(T0 + 31 * MIN).unwrap()), vec![2500]);
    assert_eq!(e.state().phase, Phase::Running);
    let a = e.abort(T0 + 32 * MIN).unwrap();
    assert_eq!(
        a[0],
        Action::Rollback {
            evacuate_new: false
        }
    );
    assert_eq!(kinds(&a), vec![EventKind::Aborted]);
    assert_eq!(e.state().phase, Phase::RolledBack);
    // Start again after an abort: step one.
    assert_eq!(shares(&e.start(T0 + 40 * MIN).unwrap()), vec![100]);
    // Promote past the last step completes.
    for _ in 0..4 {
        e.promote(T0 + 41 * MIN).unwrap();
    }
    assert_eq!(e.step_share_bp(), 10_000);
    let last = e.promote(T0 + 42 * MIN).unwrap();
    assert!(shares(&last).is_empty());
    assert_eq!(e.state().phase, Phase::Completed);
}

#[test]
fn a_silent_source_holds_counts_then_pauses() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    let down = Reading::Inconclusive("connection refused".into());
    let acts = drive(&mut e, T0, T0 + 10 * MIN, |_| down.clone());
    assert!(acts.is_empty(), "not yet 10 minutes of silence: {acts:?}");
    assert_eq!(e.state().inconclusive_evaluations, 10);
    assert_eq!(e.state().inconclusive_since_ms, Some(T0 + MIN));
    let acts = drive(&mut e, T0 + 10 * MIN + 1000, T0 + 11 * MIN, |_| {
        down.clone()
    });
    assert!(matches!(&acts[0].1, Action::Pause(r) if r.contains("connection refused")));
    assert_eq!(e.state().phase, Phase::Paused);
    assert_eq!(e.step_share_bp(), 100);
    // A source that recovers in time resets the silence.
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    drive(&mut e, T0, T0 + 9 * MIN, |_| down.clone());
    drive(&mut e, T0 + 9 * MIN + 1000, T0 + 10 * MIN, |_| good());
    assert_eq!(e.state().inconclusive_since_ms, None);
    assert!(drive(&mut e, T0 + 10 * MIN + 1000, T0 + 15 * MIN, |_| down
        .clone())
    .iter()
    .all(|(_, a)| !matches!(a, Action::Pause(_))));
    // Advise mode only says it would pause.
    let mut e = Engine::new(plan_with("mode = \"advise\""));
    e.start(T0).unwrap();
    let acts = drive(&mut e, T0, T0 + 12 * MIN, |_| down.clone());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert_eq!(kinds(&all), vec![EventKind::WouldPause]);
    assert_eq!(all.len(), 1);
    assert_eq!(e.state().phase, Phase::Advising);
}

fn persist(e: &Engine) -> RolloutState {
    let json = serde_json::to_string(e.state()).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn restore_resumes_the_same_step() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    drive(&mut e, T0, T0 + 12 * MIN, |_| good());
    assert_eq!(e.state().step, 2);
    let saved = persist(&e);
    // "Restart": a new engine from the same plan and the saved state.
    let restored = Engine::restore(plan(), saved.clone());
    assert!(restored.dropped.is_none());
    let mut r = restored.engine;
    assert_eq!(r.state(), &saved);
    assert_eq!(r.step_share_bp(), 2500);
    // It goes on from step 3 to step 4: never step one, never a jump.
    let acts = drive(&mut r, T0 + 12 * MIN + 1000, T0 + 15 * MIN, |_| good());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert_eq!(shares(&all), vec![5000]);
}

#[test]
fn a_plan_edit_drops_the_state_with_a_message() {
    let mut e = Engine::new(plan());
    e.start(T0).unwrap();
    drive(&mut e, T0, T0 + 12 * MIN, |_| good());
    let saved = persist(&e);
    let edited = plan_with("evacuate_new = true");
    let restored = Engine::restore(edited.clone(), saved.clone());
    let msg = restored.dropped.expect("dropped");
    assert!(msg.contains("the [rollout] plan changed"), "{msg}");
    assert!(msg.contains(&saved.plan_fingerprint), "{msg}");
    assert!(msg.contains(&edited.fingerprint()), "{msg}");
    assert!(msg.contains("running at step 3"), "{msg}");
    assert_eq!(restored.engine.state().phase, Phase::Idle);
    assert_eq!(restored.engine.step_share_bp(), 0);
    // A state naming a step the plan does not have is dropped too.
    let mut broken = saved;
    broken.step = 9;
    let r = Engine::restore(plan(), broken);
    assert!(r
        .dropped
        .unwrap()
        .contains("step 10 but the plan has 5 steps"));
}

#[test]
fn metric_values_follow_the_engine() {
    let mut e = Engine::new(plan());
    let m = e.metric_values();
    assert_eq!(m.step, 0);
    assert!(m.state.contains(&("idle", 1)));
    assert!(m.state.contains(&("running", 0)));
    assert_eq!(m.state.len(), 6);
    // Counters exist at 0 for every gate and result before any verdict.
    assert_eq!(m.verdicts_total.len(), 2 * 3);
    assert!(m.verdicts_total.iter().all(|v| v.2 == 0));
    e.start(T0).unwrap();
    e.tick(T0 + MIN, &bad());
    let m = e.metric_values();
    assert_eq!(m.step, 1);
    assert!(m.state.contains(&("running", 1)));
    assert!(m
        .gate_values
        .contains(&("error_ratio".to_string(), "new", 0.2)));
    assert!(m
        .gate_values
        .contains(&("error_ratio".to_string(), "old", 0.01)));
    assert!(m
        .verdicts_total
        .contains(&("error_ratio".to_string(), "fail", 1)));
    e.tick(T0 + 2 * MIN, &Reading::Inconclusive("down".into()));
    assert_eq!(e.metric_values().source_inconclusive_total, 1);
}

#[test]
fn advise_mode_walks_the_plan_without_moving_the_share() {
    let mut e = Engine::new(plan_with("mode = \"advise\""));
    e.start(T0).unwrap();
    let acts = drive(&mut e, T0, T0 + 60 * MIN, |_| good());
    let all: Vec<Action> = acts.into_iter().map(|(_, a)| a).collect();
    assert!(shares(&all).is_empty());
    assert_eq!(kinds(&all), vec![EventKind::WouldAdvance; 5]);
    match all.last() {
        Some(Action::Notify(ev)) => {
            assert!(
                ev.message.contains("would complete at step 5/5 (100%)"),
                "{}",
                ev.message
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.state().phase, Phase::Completed);
}

#[test]
fn a_state_file_with_only_the_essential_fields_restores() {
    let p = plan();
    let json = format!(
        r#"{{"plan_fingerprint":"{}","phase":"paused","step":1,"step_since_ms":{T0}}}"#,
        p.fingerprint()
    );
    let saved: RolloutState = serde_json::from_str(&json).unwrap();
    let r = Engine::restore(p, saved);
    assert!(r.dropped.is_none());
    assert_eq!(r.engine.state().phase, Phase::Paused);
    assert_eq!(r.engine.step_share_bp(), 500);
}
