//! The runner-process pool: a fixed number of slots, each supervised by a task that keeps
//! one runner process alive (restarting it with backoff when it dies), writes requests to
//! its stdin and routes the events it reports to the run (or inspection) waiting for them.
//!
//! A runner that dies takes its in-flight runs with it: their event channels close, which
//! is how a run handler learns it must hand its job back for redelivery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use prost::Message;
use tocsin_core::Shutdown;
use tocsin_proto::v1::{self, runner_event::Event, runner_request::Request};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::python::{MAX_FRAME, SDK_PATH_ENV};

/// Requests queued for one runner's stdin.
const REQUEST_QUEUE: usize = 1024;
/// Events queued for one run handler.
const RUN_EVENT_QUEUE: usize = 256;

/// How runner processes are started.
#[derive(Debug, Clone)]
pub struct RunnerSpec {
    /// Program (the `tocsin` binary, or a test binary calling `runner_main`).
    pub program: PathBuf,
    /// Its arguments (`["runner"]`).
    pub args: Vec<String>,
    /// Put first on the runner's `sys.path`.
    pub sdk_path: Option<PathBuf>,
    /// How long a runner may take to report ready.
    pub start_timeout: Duration,
}

/// The pool could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// No runner is up (all are starting or restarting).
    #[error("no runner process is available")]
    Unavailable,
    /// The runner died while handling the request.
    #[error("the runner process exited")]
    RunnerGone,
    /// The pool is shutting down.
    #[error("the runner pool is shutting down")]
    ShuttingDown,
}

#[derive(Default)]
struct SlotState {
    requests: Option<mpsc::Sender<v1::RunnerRequest>>,
    pid: Option<u32>,
    runs: HashMap<String, mpsc::Sender<Event>>,
    inspects: HashMap<String, oneshot::Sender<v1::InspectResult>>,
}

struct Slot {
    id: usize,
    state: Mutex<SlotState>,
    kill: Notify,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        // A poisoned lock means a panic while holding it; the state is plain data and
        // remains usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A pool of runner processes.
pub struct RunnerPool {
    slots: Vec<Arc<Slot>>,
    spec: RunnerSpec,
    lifecycle: Shutdown,
    next_request: AtomicU64,
}

impl std::fmt::Debug for RunnerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerPool")
            .field("size", &self.slots.len())
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// A run executing on a runner: its events, and the way to send it decisions.
pub struct RunHandle {
    /// Events the runner reports for this run; `None` means the runner died.
    pub events: mpsc::Receiver<Event>,
    run_id: String,
    slot: Arc<Slot>,
    requests: mpsc::Sender<v1::RunnerRequest>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.run_id)
            .field("slot", &self.slot.id)
            .finish_non_exhaustive()
    }
}

impl RunHandle {
    /// Sends a request to the run's runner.
    pub async fn send(&self, request: Request) -> Result<(), PoolError> {
        self.requests
            .send(v1::RunnerRequest {
                request: Some(request),
            })
            .await
            .map_err(|_| PoolError::RunnerGone)
    }

    /// Asks the runner to drop the run without reporting it.
    pub async fn cancel(&self) {
        let _ = self
            .send(Request::CancelRun(v1::CancelRun {
                run_id: self.run_id.clone(),
            }))
            .await;
    }

    /// Kills the run's runner process (a hard deadline passed). Its other runs are handed
    /// back for redelivery.
    pub fn kill_runner(&self) {
        self.slot.kill.notify_one();
    }

    /// Pid of the runner process executing the run.
    pub fn runner_pid(&self) -> Option<u32> {
        self.slot.state().pid
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.slot.state().runs.remove(&self.run_id);
    }
}

impl RunnerPool {
    /// Starts `size` supervised runner processes.
    pub fn start(spec: RunnerSpec, size: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            slots: (0..size)
                .map(|id| {
                    Arc::new(Slot {
                        id,
                        state: Mutex::new(SlotState::default()),
                        kill: Notify::new(),
                    })
                })
                .collect(),
            spec,
            lifecycle: Shutdown::new(),
            next_request: AtomicU64::new(1),
        });
        for slot in &pool.slots {
            let slot = slot.clone();
            let spec = pool.spec.clone();
            let lifecycle = pool.lifecycle.clone();
            pool.lifecycle
                .spawn("runner-supervisor", supervise(slot, spec, lifecycle));
        }
        pool
    }

    /// Waits until every slot has a ready runner.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), PoolError> {
        let start = Instant::now();
        loop {
            if self.slots.iter().all(|s| s.state().requests.is_some()) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(PoolError::Unavailable);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Number of runners currently up.
    pub fn ready_runners(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state().requests.is_some())
            .count()
    }

    /// Pids of the live runner processes.
    pub fn runner_pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.state().pid).collect()
    }

    /// Picks the least busy live runner, waiting up to the start timeout for one.
    async fn pick(&self) -> Result<(Arc<Slot>, mpsc::Sender<v1::RunnerRequest>), PoolError> {
        let start = Instant::now();
        loop {
            if self.lifecycle.is_cancelled() {
                return Err(PoolError::ShuttingDown);
            }
            let best = self
                .slots
                .iter()
                .filter_map(|slot| {
                    let state = slot.state();
                    let requests = state.requests.clone()?;
                    Some((state.runs.len(), slot.clone(), requests))
                })
                .min_by_key(|(load, _, _)| *load);
            if let Some((_, slot, requests)) = best {
                return Ok((slot, requests));
            }
            if start.elapsed() > self.spec.start_timeout {
                return Err(PoolError::Unavailable);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a run on a runner.
    pub async fn start_run(&self, start: v1::StartRun) -> Result<RunHandle, PoolError> {
        let (slot, requests) = self.pick().await?;
        let (tx, rx) = mpsc::channel(RUN_EVENT_QUEUE);
        let run_id = start.run_id.clone();
        slot.state().runs.insert(run_id.clone(), tx);
        let handle = RunHandle {
            events: rx,
            run_id,
            slot,
            requests,
        };
        handle.send(Request::StartRun(start)).await?;
        Ok(handle)
    }

    /// Loads a bundle in a runner and returns its playbook metadata (deploy time).
    pub async fn inspect(
        &self,
        bundle_dir: &std::path::Path,
        bundle_hash: &str,
        timeout: Duration,
    ) -> Result<v1::InspectResult, PoolError> {
        let (slot, requests) = self.pick().await?;
        let request_id = format!(
            "inspect-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        slot.state().inspects.insert(request_id.clone(), tx);
        requests
            .send(v1::RunnerRequest {
                request: Some(Request::Inspect(v1::Inspect {
                    request_id: request_id.clone(),
                    bundle_dir: bundle_dir.display().to_string(),
                    bundle_hash: bundle_hash.to_owned(),
                })),
            })
            .await
            .map_err(|_| PoolError::RunnerGone)?;
        let result = tokio::time::timeout(timeout, rx).await;
        slot.state().inspects.remove(&request_id);
        match result {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(PoolError::RunnerGone),
            Err(_) => Err(PoolError::Unavailable),
        }
    }

    /// Stops every runner: asks each to shut down, kills those still alive after `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.lifecycle.cancel();
        if !self
            .lifecycle
            .wait_tasks(grace + Duration::from_secs(1))
            .await
        {
            tracing::warn!("runner supervisors did not stop in time");
        }
    }
}

async fn supervise(slot: Arc<Slot>, spec: RunnerSpec, lifecycle: Shutdown) {
    let mut failures: u32 = 0;
    while !lifecycle.is_cancelled() {
        let started = Instant::now();
        match spawn_runner(&spec) {
            Ok(child) => {
                let outcome = drive_runner(&slot, &spec, child, &lifecycle).await;
                clear_slot(&slot);
                match outcome {
                    RunnerExit::Stopped => return,
                    RunnerExit::Exited(status) => {
                        tracing::warn!(slot = slot.id, %status, "runner process exited; restarting");
                        tocsin_core::metrics::registry().inc_by(
                            "tocsin_runner_restarts_total",
                            "Runner processes that exited and were restarted",
                            &[],
                            &[],
                            1.0,
                        )
                    }
                    RunnerExit::Failed(reason) => {
                        tracing::error!(slot = slot.id, %reason, "runner process failed; restarting")
                    }
                }
            }
            Err(error) => {
                tracing::error!(slot = slot.id, program = %spec.program.display(), %error, "failed to start runner process");
            }
        }
        failures = if started.elapsed() > Duration::from_secs(30) {
            0
        } else {
            failures.saturating_add(1)
        };
        let backoff = Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow(failures.min(7)))
            .min(Duration::from_secs(10));
        tokio::select! {
            () = lifecycle.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

fn spawn_runner(spec: &RunnerSpec) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Own process group: a terminal's Ctrl-C goes to the worker, which drains and
        // then stops its runners, rather than killing runs mid-flight.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(path) = &spec.sdk_path {
        cmd.env(SDK_PATH_ENV, path);
    }
    cmd.spawn()
}

enum RunnerExit {
    /// The pool is shutting down and the runner stopped.
    Stopped,
    /// The process exited on its own (crash, kill).
    Exited(std::process::ExitStatus),
    /// It misbehaved (no ready frame, undecodable output).
    Failed(String),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

async fn drive_runner(
    slot: &Arc<Slot>,
    spec: &RunnerSpec,
    mut child: Child,
    lifecycle: &Shutdown,
) -> RunnerExit {
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return RunnerExit::Failed("runner pipes missing".to_owned());
    };
    let slot_id = slot.id;
    let pid = child.id();
    lifecycle.spawn("runner-stderr", async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "tocsin::runner", slot = slot_id, pid, "{line}");
        }
    });
    let (req_tx, mut req_rx) = mpsc::channel::<v1::RunnerRequest>(REQUEST_QUEUE);
    let writer = lifecycle.spawn("runner-stdin", async move {
        let mut sink = FramedWrite::new(stdin, codec());
        while let Some(request) = req_rx.recv().await {
            if sink
                .send(bytes::Bytes::from(request.encode_to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
        // Dropping the sink closes stdin: the runner reads EOF and shuts down.
    });
    let mut frames = FramedRead::new(stdout, codec());

    // The first frame must be Ready.
    let first = tokio::time::timeout(spec.start_timeout, frames.next()).await;
    let ready = match first {
        Ok(Some(Ok(frame))) => match v1::RunnerEvent::decode(frame) {
            Ok(v1::RunnerEvent {
                event: Some(Event::Ready(ready)),
            }) => ready,
            _ => return fail(child, "first frame was not ready").await,
        },
        Ok(_) => {
            return match child.wait().await {
                Ok(status) => RunnerExit::Exited(status),
                Err(e) => RunnerExit::Failed(e.to_string()),
            };
        }
        Err(_) => return fail(child, "runner did not report ready in time").await,
    };
    tracing::info!(
        slot = slot.id,
        pid = ready.pid,
        python = %ready.python_version.lines().next().unwrap_or_default(),
        prefix = %ready.python_prefix,
        "runner ready"
    );
    {
        let mut state = slot.state();
        state.requests = Some(req_tx.clone());
        state.pid = Some(ready.pid);
    }

    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(frame)) => match v1::RunnerEvent::decode(frame) {
                    Ok(v1::RunnerEvent { event: Some(event) }) => route(slot, event).await,
                    Ok(_) => {}
                    Err(e) => return fail(child, &format!("undecodable event: {e}")).await,
                },
                Some(Err(e)) => return fail(child, &format!("bad frame: {e}")).await,
                None => {
                    return match child.wait().await {
                        Ok(status) => RunnerExit::Exited(status),
                        Err(e) => RunnerExit::Failed(e.to_string()),
                    };
                }
            },
            () = slot.kill.notified() => {
                tracing::warn!(slot = slot.id, pid = ready.pid, "killing runner process");
                let _ = child.start_kill();
            }
            () = lifecycle.cancelled() => {
                clear_slot(slot);
                let _ = req_tx.send(v1::RunnerRequest {
                    request: Some(Request::Shutdown(v1::Shutdown {})),
                }).await;
                drop(req_tx);
                drop(writer);
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                return RunnerExit::Stopped;
            }
        }
    }
}

async fn fail(mut child: Child, reason: &str) -> RunnerExit {
    let _ = child.start_kill();
    let _ = child.wait().await;
    RunnerExit::Failed(reason.to_owned())
}

async fn route(slot: &Slot, event: Event) {
    let run_id = match &event {
        Event::StepIntent(e) => &e.run_id,
        Event::StepResult(e) => &e.run_id,
        Event::RunLog(e) => &e.run_id,
        Event::RunFinished(e) => &e.run_id,
        Event::InspectResult(result) => {
            let waiter = slot.state().inspects.remove(&result.request_id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(result.clone());
            }
            return;
        }
        Event::Ready(_) => return,
    };
    let target = slot.state().runs.get(run_id).cloned();
    match target {
        // Bounded: a slow run handler slows its runner's reporting instead of growing memory.
        Some(tx) => {
            let _ = tx.send(event).await;
        }
        None => tracing::debug!(slot = slot.id, %run_id, "event for a run no longer tracked"),
    }
}

fn clear_slot(slot: &Slot) {
    let mut state = slot.state();
    state.requests = None;
    state.pid = None;
    // Dropping the senders tells every waiting run handler that its runner is gone.
    state.runs.clear();
    state.inspects.clear();
}
