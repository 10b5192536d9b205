//! The runner process: embeds CPython, runs the SDK's asyncio runtime on the main thread,
//! and bridges it to the worker over stdin/stdout with length-delimited protobuf frames.
//!
//! Threads: the main thread runs `tocsin._runtime.serve(host)` (the event loop); a reader
//! thread decodes [`RunnerRequest`]s from stdin and hands them to the loop through the
//! thread-safe `submit` callable the runtime registers with `host.attach`; a writer thread
//! encodes [`RunnerEvent`]s from a bounded channel onto the duplicated stdout. The runtime
//! points fd 1 at stderr, so `print()` in a playbook cannot corrupt the frame stream.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

mod http;

use prost::Message;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tocsin_proto::v1::{
    self, runner_event::Event, runner_request::Request, step_decision::Decision,
};

/// Largest frame accepted on the pipe, in either direction.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Events waiting for the writer thread; a full queue blocks the emitting Python call
/// (backpressure towards the playbook), never drops.
const EVENT_QUEUE: usize = 4096;

/// Environment variable naming a directory to put first on `sys.path` (the SDK checkout in
/// development; unset when the SDK is installed).
pub const SDK_PATH_ENV: &str = "TOCSIN_SDK_PATH";

/// Entry point of the runner process (`tocsin runner`).
pub fn runner_main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tocsin runner: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let frames_out: File = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| format!("failed to duplicate stdout: {e}"))?;
    let (tx, rx) = sync_channel::<v1::RunnerEvent>(EVENT_QUEUE);
    // Shared with the Host so that, once `serve` returns, taking the sender out ends the
    // writer thread even if Python still holds a reference to the host.
    let events = Arc::new(Mutex::new(Some(tx.clone())));
    let writer = std::thread::Builder::new()
        .name("runner-writer".to_owned())
        .spawn(move || write_frames(frames_out, rx))
        .map_err(|e| format!("failed to start writer thread: {e}"))?;

    pyo3::prepare_freethreaded_python();
    let served = Python::with_gil(|py| -> PyResult<()> {
        let sys = py.import("sys")?;
        if let Some(path) = std::env::var_os(SDK_PATH_ENV) {
            let path = path.to_string_lossy().into_owned();
            sys.getattr("path")?.downcast::<PyList>()?.insert(0, path)?;
        }
        let version: String = sys.getattr("version")?.extract()?;
        let prefix: String = sys.getattr("prefix")?.extract()?;
        eprintln!(
            "tocsin runner: python {} (prefix {prefix})",
            version.replace('\n', " ")
        );
        let _ = tx.send(v1::RunnerEvent {
            event: Some(Event::Ready(v1::Ready {
                pid: std::process::id(),
                python_version: version,
                python_prefix: prefix,
            })),
        });
        let runtime = py.import("tocsin._runtime")?;
        let host = Py::new(py, Host::new(events.clone()))?;
        runtime.call_method1("serve", (host,))?;
        Ok(())
    });
    drop(tx);
    if let Ok(mut slot) = events.lock() {
        slot.take();
    }
    let result = served.map_err(|e| {
        Python::with_gil(|py| {
            e.print(py);
        });
        format!("python runtime failed: {e}")
    });
    // The writer ends once every sender (ours and the host's) is gone.
    let _ = writer.join();
    result
}

fn write_frames(mut out: File, rx: Receiver<v1::RunnerEvent>) {
    let mut buf = Vec::with_capacity(4096);
    for event in rx {
        buf.clear();
        let len = event.encoded_len();
        let Ok(len32) = u32::try_from(len) else {
            eprintln!("tocsin runner: dropping oversized event of {len} bytes");
            continue;
        };
        buf.extend_from_slice(&len32.to_be_bytes());
        if event.encode(&mut buf).is_err() || out.write_all(&buf).is_err() {
            // The worker is gone; nothing left to tell it.
            return;
        }
    }
}

/// Reads one frame; `Ok(None)` at a clean EOF.
fn read_frame(input: &mut impl Read) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read failed: {e}")),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes exceeds the limit"));
    }
    let mut frame = vec![0u8; len];
    input
        .read_exact(&mut frame)
        .map_err(|e| format!("read failed: {e}"))?;
    Ok(Some(frame))
}

/// Turns a request into the `(kind, payload_json)` pair the Python runtime dispatches on.
fn to_dispatch(request: Request) -> (&'static str, String) {
    use serde_json::json;
    let payload = match request {
        Request::StartRun(s) => {
            let alert: serde_json::Value =
                serde_json::from_str(&s.alert_json).unwrap_or(serde_json::Value::Null);
            let input: serde_json::Value =
                serde_json::from_str(&s.input_json).unwrap_or(serde_json::Value::Null);
            let trigger = if s.trigger.is_empty() {
                "alert".to_owned()
            } else {
                s.trigger
            };
            let secrets: serde_json::Value = serde_json::from_str(&s.secrets_json)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()));
            return (
                "start_run",
                json!({
                    "run_id": s.run_id, "tenant": s.tenant, "playbook": s.playbook,
                    "bundle_dir": s.bundle_dir, "bundle_hash": s.bundle_hash,
                    "attempt": s.attempt, "alert": alert, "input": input, "trigger": trigger,
                    "secrets": secrets,
                    "traceparent": (!s.traceparent.is_empty()).then_some(s.traceparent),
                })
                .to_string(),
            );
        }
        Request::StepDecision(d) => {
            let decision = match d.decision() {
                Decision::Execute => "execute",
                Decision::Replay => "replay",
                Decision::Abort | Decision::Unspecified => "abort",
            };
            return (
                "step_decision",
                json!({
                    "run_id": d.run_id, "seq": d.seq, "decision": decision,
                    "result_json": d.result_json, "error": d.error,
                    "status": d.status, "reason": d.reason,
                    "traceparent": (!d.traceparent.is_empty()).then_some(d.traceparent),
                })
                .to_string(),
            );
        }
        Request::CancelRun(c) => return ("cancel_run", json!({ "run_id": c.run_id }).to_string()),
        Request::Inspect(i) => json!({
            "request_id": i.request_id, "bundle_dir": i.bundle_dir, "bundle_hash": i.bundle_hash,
        }),
        Request::Shutdown(_) => return ("shutdown", "{}".to_owned()),
    };
    ("inspect", payload.to_string())
}

/// Reads requests until EOF (the worker closed the pipe or died), then asks the runtime to
/// shut down.
fn read_requests(submit: Arc<Py<PyAny>>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let (kind, payload) = match read_frame(&mut stdin) {
            Ok(Some(frame)) => match v1::RunnerRequest::decode(frame.as_slice()) {
                Ok(v1::RunnerRequest {
                    request: Some(request),
                }) => to_dispatch(request),
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("tocsin runner: undecodable request: {e}");
                    continue;
                }
            },
            Ok(None) => ("shutdown", "{}".to_owned()),
            Err(e) => {
                eprintln!("tocsin runner: {e}");
                ("shutdown", "{}".to_owned())
            }
        };
        let done = kind == "shutdown";
        let delivered = Python::with_gil(|py| submit.call1(py, (kind, payload)).map(|_| ()));
        if let Err(e) = delivered {
            // The loop is closed: the runtime is already shutting down.
            eprintln!("tocsin runner: runtime did not take {kind}: {e}");
            return;
        }
        if done {
            return;
        }
    }
}

/// The object the Python runtime reports through (`host.*` in `tocsin._runtime`).
#[pyclass(module = "tocsin_host", name = "Host")]
struct Host {
    events: Arc<Mutex<Option<SyncSender<v1::RunnerEvent>>>>,
    submit: Arc<OnceLock<Arc<Py<PyAny>>>>,
    http: OnceLock<http::HttpBridge>,
}

impl Host {
    fn new(events: Arc<Mutex<Option<SyncSender<v1::RunnerEvent>>>>) -> Self {
        Self {
            events,
            submit: Arc::new(OnceLock::new()),
            http: OnceLock::new(),
        }
    }

    fn emit(&self, py: Python<'_>, event: Event) -> PyResult<()> {
        let closed = || pyo3::exceptions::PyBrokenPipeError::new_err("worker connection closed");
        let tx = self
            .events
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .ok_or_else(closed)?;
        // Sending may block when the queue is full; release the GIL meanwhile.
        py.allow_threads(move || tx.send(v1::RunnerEvent { event: Some(event) }))
            .map_err(|_| closed())
    }
}

#[pymethods]
impl Host {
    /// Registers the runtime's thread-safe `submit(kind, payload_json)` and starts reading
    /// requests. Called once by `serve`.
    fn attach(&self, submit: Py<PyAny>) -> PyResult<()> {
        let submit = Arc::new(submit);
        if self.submit.set(submit.clone()).is_err() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "host already attached",
            ));
        }
        std::thread::Builder::new()
            .name("runner-reader".to_owned())
            .spawn(move || read_requests(submit))
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        Ok(())
    }

    /// Starts an outgoing HTTP request; the answer arrives as an `http_response` message
    /// `{"request_id", "status", "headers": [[name, value]], "body_b64", "error"}`.
    #[pyo3(signature = (request_id, method, url, headers_json, body, timeout_s))]
    fn http_request(
        &self,
        request_id: String,
        method: String,
        url: String,
        headers_json: String,
        body: Option<Vec<u8>>,
        timeout_s: f64,
    ) -> PyResult<()> {
        if self.http.get().is_none() {
            let bridge =
                http::HttpBridge::new().map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
            // Only the event-loop thread calls this; losing a race would only drop a spare.
            let _ = self.http.set(bridge);
        }
        let bridge = self
            .http
            .get()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("http unavailable"))?;
        bridge.start(
            http::HttpRequest {
                request_id,
                method,
                url,
                headers_json,
                body,
                timeout_s,
            },
            self.submit.clone(),
        );
        Ok(())
    }

    fn step_intent(
        &self,
        py: Python<'_>,
        run_id: String,
        seq: u32,
        action: String,
        args_json: String,
        idempotent: bool,
    ) -> PyResult<()> {
        self.emit(
            py,
            Event::StepIntent(v1::StepIntent {
                run_id,
                seq,
                action,
                args_json,
                idempotent,
            }),
        )
    }

    #[pyo3(signature = (run_id, seq, ok, result_json, error, attempts, duration_ms))]
    #[allow(clippy::too_many_arguments)]
    fn step_result(
        &self,
        py: Python<'_>,
        run_id: String,
        seq: u32,
        ok: bool,
        result_json: Option<String>,
        error: Option<String>,
        attempts: u32,
        duration_ms: u64,
    ) -> PyResult<()> {
        self.emit(
            py,
            Event::StepResult(v1::StepResult {
                run_id,
                seq,
                ok,
                result_json,
                error,
                attempts,
                duration_ms,
            }),
        )
    }

    fn run_log(
        &self,
        py: Python<'_>,
        run_id: String,
        level: String,
        message: String,
        fields_json: String,
    ) -> PyResult<()> {
        self.emit(
            py,
            Event::RunLog(v1::RunLog {
                run_id,
                level,
                message,
                fields_json,
            }),
        )
    }

    #[pyo3(signature = (run_id, status, result_json, error, traceback))]
    fn run_finished(
        &self,
        py: Python<'_>,
        run_id: String,
        status: String,
        result_json: Option<String>,
        error: Option<String>,
        traceback: Option<String>,
    ) -> PyResult<()> {
        self.emit(
            py,
            Event::RunFinished(v1::RunFinished {
                run_id,
                status,
                result_json,
                error,
                traceback,
            }),
        )
    }

    #[pyo3(signature = (request_id, playbooks_json, error))]
    fn inspect_result(
        &self,
        py: Python<'_>,
        request_id: String,
        playbooks_json: Option<String>,
        error: Option<String>,
    ) -> PyResult<()> {
        self.emit(
            py,
            Event::InspectResult(v1::InspectResult {
                request_id,
                playbooks_json,
                error,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(b"abc");
        let mut cursor = std::io::Cursor::new(buf);
        assert_eq!(
            read_frame(&mut cursor).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(read_frame(&mut cursor).unwrap(), None);
        let huge = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
        assert!(read_frame(&mut std::io::Cursor::new(huge.to_vec())).is_err());
    }

    #[test]
    fn requests_map_to_runtime_dispatch_kinds() {
        let (kind, payload) = to_dispatch(Request::StepDecision(v1::StepDecision {
            run_id: "r".into(),
            seq: 3,
            decision: Decision::Replay.into(),
            result_json: Some("{\"a\":1}".into()),
            ..Default::default()
        }));
        assert_eq!(kind, "step_decision");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["decision"], "replay");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["result_json"], "{\"a\":1}");
        let (kind, payload) = to_dispatch(Request::StartRun(v1::StartRun {
            run_id: "r".into(),
            alert_json: "{\"title\":\"t\"}".into(),
            ..Default::default()
        }));
        assert_eq!(kind, "start_run");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["alert"]["title"], "t");
        assert_eq!(
            to_dispatch(Request::Shutdown(v1::Shutdown {})).0,
            "shutdown"
        );
    }
}
