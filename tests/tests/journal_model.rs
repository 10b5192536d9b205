//! Property test of the journal and fencing state machine (issue 4): random interleavings of
//! two workers claiming, journaling intents, performing effects, recording results,
//! heartbeating, releasing, finishing and crashing, executed against the real store
//! (PostgreSQL) and compared, operation by operation, with a small reference model. The
//! model also states the safety property directly: a non-idempotent step's effect happens
//! at most once, whatever the interleaving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use tocsin_proto::types::RunStatus;
use tocsin_store::Store;
use tocsin_store::bundles::PlaybookMeta;
use tocsin_store::runs::{Claim, RunOutcome, StepDecision, StepIntent, StepOutcome};
use tocsin_tests::TENANT;

const STEPS: usize = 3;
const PLAYBOOK: &str = "model";

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Claim with a lease that stays live (`true`) or is already over (`false`, as if the
    /// worker had stalled past it).
    Claim(usize, bool),
    Intent(usize),
    Effect(usize),
    Result(usize),
    Finish(usize),
    Heartbeat(usize, bool),
    Release(usize),
    Crash(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let w = 0..2usize;
    prop_oneof![
        1 => (w.clone(), any::<bool>()).prop_map(|(w, l)| Op::Claim(w, l)),
        3 => w.clone().prop_map(Op::Intent),
        3 => w.clone().prop_map(Op::Effect),
        3 => w.clone().prop_map(Op::Result),
        1 => w.clone().prop_map(Op::Finish),
        1 => (w.clone(), any::<bool>()).prop_map(|(w, l)| Op::Heartbeat(w, l)),
        1 => w.clone().prop_map(Op::Release),
        1 => w.prop_map(Op::Crash),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum StepState {
    Intent { epoch: i32 },
    Succeeded,
    Uncertain,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Next: the intent of step `pc`.
    Ready,
    /// The body of step `pc` may run (decision Execute).
    Executing,
    /// The effect happened; next: its result.
    Done,
    /// The store aborted the run with this status; next: finish with it.
    Abort(RunStatus),
}

#[derive(Debug, Clone)]
struct Worker {
    epoch: i32,
    pc: usize,
    phase: Phase,
}

#[derive(Debug, Default)]
struct Model {
    status: &'static str,
    epoch: i32,
    lease_live: bool,
    steps: BTreeMap<usize, StepState>,
    workers: [Option<Worker>; 2],
    /// Effects performed per step (the outside world).
    effects: [usize; STEPS],
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        runtime().block_on(async {
            let store = tocsin_tests::fresh_store().await.expect("store");
            let meta = PlaybookMeta {
                name: PLAYBOOK.to_owned(),
                module: "model".to_owned(),
                function: "model".to_owned(),
                trigger: "manual".to_owned(),
                when: None,
                priority: "normal".to_owned(),
                timeout_ms: 60_000,
                file: "model.py".to_owned(),
                line: 1,
                enabled: true,
                tenants: serde_json::Value::String("*".to_owned()),
            };
            let files = BTreeMap::from([("model.py".to_owned(), "# model\n".to_owned())]);
            store
                .save_bundle(TENANT, "model-bundle", &files, &[meta])
                .await
                .expect("save bundle");
            store
                .deploy_bundle(TENANT, "model-bundle", "test")
                .await
                .expect("deploy");
            store
        })
    })
}

fn lease(live: bool) -> Duration {
    if live {
        Duration::from_secs(3600)
    } else {
        Duration::ZERO
    }
}

fn action(seq: usize) -> String {
    format!("step_{seq}")
}

fn args(seq: usize) -> String {
    format!("{{\"seq\":{seq}}}")
}

/// Runs `ops` against a fresh run and the model; fails at the first divergence.
async fn check(store: &Store, ops: &[Op], idempotent: [bool; STEPS]) -> Result<(), TestCaseError> {
    let run = store
        .start_manual_run(TENANT, PLAYBOOK, None, None, None)
        .await
        .expect("queue run");
    let mut m = Model {
        status: "queued",
        ..Model::default()
    };
    for (i, op) in ops.iter().enumerate() {
        let at = format!("op {i} {op:?} in {ops:?} (idempotent {idempotent:?})");
        match *op {
            Op::Claim(w, live) => {
                if m.workers[w].is_some() {
                    continue;
                }
                let got = store.claim_run(TENANT, run, lease(live)).await.unwrap();
                let claimable = m.status == "queued" || (m.status == "running" && !m.lease_live);
                match got {
                    Claim::Claimed(c) => {
                        prop_assert!(claimable, "claimed a run the model holds busy: {at}");
                        m.epoch += 1;
                        prop_assert_eq!(c.epoch, m.epoch, "{}", at);
                        m.status = "running";
                        m.lease_live = live;
                        m.workers[w] = Some(Worker {
                            epoch: c.epoch,
                            pc: 0,
                            phase: Phase::Ready,
                        });
                    }
                    Claim::Finished(status) => {
                        prop_assert_eq!(status.as_str(), m.status, "{}", at);
                        prop_assert!(m.status != "queued" && m.status != "running", "{}", at);
                    }
                    Claim::Busy { .. } => {
                        prop_assert!(!claimable && m.status == "running", "busy: {}", at);
                    }
                }
            }
            Op::Intent(w) => {
                let Some(worker) = m.workers[w].clone() else {
                    continue;
                };
                if worker.phase != Phase::Ready || worker.pc >= STEPS {
                    continue;
                }
                let seq = worker.pc;
                let (action, args) = (action(seq), args(seq));
                let got = store
                    .record_step_intent(&StepIntent {
                        run_id: run,
                        tenant: TENANT,
                        epoch: worker.epoch,
                        seq: i32::try_from(seq).unwrap(),
                        action: &action,
                        args_json: &args,
                        idempotent: idempotent[seq],
                        trace: None,
                    })
                    .await
                    .unwrap();
                let live = m.status == "running" && m.epoch == worker.epoch;
                let Ok(decision) = got else {
                    prop_assert!(!live, "fenced a live claim: {}", at);
                    m.workers[w] = None;
                    continue;
                };
                prop_assert!(live, "a stale claim journaled an intent: {}", at);
                let expected = match m.steps.get(&seq) {
                    None => {
                        m.steps.insert(
                            seq,
                            StepState::Intent {
                                epoch: worker.epoch,
                            },
                        );
                        Phase::Executing
                    }
                    Some(StepState::Succeeded) => Phase::Ready,
                    Some(StepState::Intent { .. } | StepState::Uncertain) if idempotent[seq] => {
                        m.steps.insert(
                            seq,
                            StepState::Intent {
                                epoch: worker.epoch,
                            },
                        );
                        Phase::Executing
                    }
                    Some(_) => {
                        m.steps.insert(seq, StepState::Uncertain);
                        Phase::Abort(RunStatus::NeedsReview)
                    }
                };
                let worker = m.workers[w].as_mut().unwrap();
                match (&decision, expected) {
                    (StepDecision::Execute, Phase::Executing) => worker.phase = Phase::Executing,
                    (StepDecision::Replay { result, .. }, Phase::Ready) => {
                        prop_assert_eq!(
                            result.clone(),
                            Some(serde_json::json!({"done": seq})),
                            "{}",
                            at
                        );
                        worker.pc += 1;
                    }
                    (StepDecision::Abort { status, .. }, Phase::Abort(want)) => {
                        prop_assert_eq!(*status, want, "{}", at);
                        worker.phase = Phase::Abort(want);
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "decision {got:?}, model expected {want:?}: {at}"
                        )));
                    }
                }
            }
            Op::Effect(w) => {
                if let Some(worker) = m.workers[w].as_mut()
                    && worker.phase == Phase::Executing
                {
                    m.effects[worker.pc] += 1;
                    worker.phase = Phase::Done;
                    // The safety property itself: never twice for a non-idempotent step.
                    prop_assert!(
                        idempotent[worker.pc] || m.effects[worker.pc] <= 1,
                        "non-idempotent step {} took effect twice: {}",
                        worker.pc,
                        at
                    );
                }
            }
            Op::Result(w) => {
                let Some(worker) = m.workers[w].clone() else {
                    continue;
                };
                if worker.phase != Phase::Done {
                    continue;
                }
                let seq = worker.pc;
                let got = store
                    .record_step_outcome(&StepOutcome {
                        run_id: run,
                        epoch: worker.epoch,
                        seq: i32::try_from(seq).unwrap(),
                        result: Some(serde_json::json!({"done": seq})),
                        error: None,
                        attempts: 1,
                        duration_ms: 1,
                    })
                    .await
                    .unwrap();
                let accepted = m.status == "running"
                    && m.epoch == worker.epoch
                    && m.steps.get(&seq)
                        == Some(&StepState::Intent {
                            epoch: worker.epoch,
                        });
                prop_assert_eq!(got.is_ok(), accepted, "result: {}", at);
                if accepted {
                    m.steps.insert(seq, StepState::Succeeded);
                    let worker = m.workers[w].as_mut().unwrap();
                    worker.pc += 1;
                    worker.phase = Phase::Ready;
                } else {
                    m.workers[w] = None;
                }
            }
            Op::Finish(w) => {
                let Some(worker) = m.workers[w].clone() else {
                    continue;
                };
                let status = match worker.phase {
                    Phase::Abort(status) => status,
                    Phase::Ready if worker.pc == STEPS => RunStatus::Succeeded,
                    _ => continue,
                };
                let got = store
                    .finish_run(&RunOutcome {
                        run_id: run,
                        epoch: worker.epoch,
                        status,
                        result: None,
                        error: None,
                        traceback: None,
                    })
                    .await
                    .unwrap();
                let accepted = m.status == "running" && m.epoch == worker.epoch;
                prop_assert_eq!(got.is_ok(), accepted, "finish: {}", at);
                if accepted {
                    m.status = status.as_str();
                    for state in m.steps.values_mut() {
                        if matches!(state, StepState::Intent { .. }) {
                            *state = StepState::Uncertain;
                        }
                    }
                }
                m.workers[w] = None;
            }
            Op::Heartbeat(w, live) => {
                let Some(worker) = m.workers[w].clone() else {
                    continue;
                };
                let got = store
                    .heartbeat_run(run, worker.epoch, lease(live))
                    .await
                    .unwrap();
                let accepted = m.status == "running" && m.epoch == worker.epoch;
                prop_assert_eq!(got.is_ok(), accepted, "heartbeat: {}", at);
                if accepted {
                    m.lease_live = live;
                } else {
                    m.workers[w] = None;
                }
            }
            Op::Release(w) => {
                let Some(worker) = m.workers[w].take() else {
                    continue;
                };
                store.release_run(run, worker.epoch).await.unwrap();
                if m.status == "running" && m.epoch == worker.epoch {
                    m.status = "queued";
                    m.lease_live = false;
                }
            }
            Op::Crash(w) => {
                // The worker forgets everything; the store is untouched.
                m.workers[w] = None;
            }
        }
    }
    // The store's final state is the model's.
    let view = store.run_view(TENANT, run).await.unwrap();
    prop_assert_eq!(view.status.as_str(), m.status);
    prop_assert_eq!(view.epoch, m.epoch);
    let steps: BTreeMap<usize, String> = view
        .steps
        .iter()
        .map(|s| (usize::try_from(s.seq).unwrap(), s.state.clone()))
        .collect();
    let model_steps: BTreeMap<usize, String> = m
        .steps
        .iter()
        .map(|(seq, s)| {
            let state = match s {
                StepState::Intent { .. } => "intent",
                StepState::Succeeded => "succeeded",
                StepState::Uncertain => "uncertain",
            };
            (*seq, state.to_owned())
        })
        .collect();
    prop_assert_eq!(steps, model_steps, "journal of {:?}", ops);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_journal_and_fencing_match_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        idempotent in any::<[bool; STEPS]>(),
    ) {
        let store = store();
        runtime().block_on(check(store, &ops, idempotent))?;
    }
}

/// A hand-written interleaving the property must cover: a worker stalls mid-action, its
/// lease lapses, another claims and finishes; the stale worker's result and finish are
/// refused, and the non-idempotent step is not executed twice.
#[test]
fn a_stale_worker_after_a_takeover_is_refused() {
    use Op::{Claim, Effect, Finish, Intent, Result};
    let ops = [
        Claim(0, false),
        Intent(0),
        Effect(0),
        Claim(1, true),
        Intent(1),
        Result(0),
        Finish(1),
        Finish(0),
    ];
    let store = store();
    runtime()
        .block_on(check(store, &ops, [false, true, true]))
        .expect("model");
}
