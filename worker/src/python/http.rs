//! Outgoing HTTP for playbooks (`tocsin.http` inside the runner): requests are performed by
//! reqwest on a small tokio runtime owned by the runner, so the GIL is free while waiting;
//! the answer is handed to the event loop as an `http_response` message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use pyo3::prelude::*;
use serde_json::json;
use tokio::sync::Semaphore;

/// Requests in flight per runner; more wait for a slot.
const MAX_IN_FLIGHT: usize = 64;
/// Largest response body handed to a playbook.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Upper bound on a playbook-chosen timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The runner's HTTP client.
pub(super) struct HttpBridge {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

/// One request as the SDK describes it.
pub(super) struct HttpRequest {
    pub(super) request_id: String,
    pub(super) method: String,
    pub(super) url: String,
    pub(super) headers_json: String,
    pub(super) body: Option<Vec<u8>>,
    pub(super) timeout_s: f64,
}

impl HttpBridge {
    pub(super) fn new() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runner-http")
            .enable_all()
            .build()
            .map_err(|e| format!("failed to start the http runtime: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| format!("failed to build the http client: {e}"))?;
        Ok(Self {
            runtime,
            client,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Starts `request`; the outcome is delivered through `submit` as `http_response`.
    pub(super) fn start(&self, request: HttpRequest, submit: Arc<OnceLock<Arc<Py<PyAny>>>>) {
        let client = self.client.clone();
        let slots = self.slots.clone();
        self.runtime.spawn(async move {
            let request_id = request.request_id.clone();
            let payload = match slots.acquire_owned().await {
                Ok(_permit) => match perform(&client, request).await {
                    Ok((status, headers, body)) => json!({
                        "request_id": request_id,
                        "status": status,
                        "headers": headers,
                        "body_b64": base64::engine::general_purpose::STANDARD.encode(body),
                        "error": null,
                    }),
                    Err(error) => json!({ "request_id": request_id, "error": error }),
                },
                Err(_) => json!({ "request_id": request_id, "error": "runner is shutting down" }),
            };
            if let Some(submit) = submit.get() {
                let payload = payload.to_string();
                let delivered =
                    Python::with_gil(|py| submit.call1(py, ("http_response", payload)).map(|_| ()));
                if let Err(e) = delivered {
                    eprintln!("tocsin runner: http response not delivered: {e}");
                }
            }
        });
    }
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

async fn perform(client: &reqwest::Client, request: HttpRequest) -> Result<Answer, String> {
    let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid http method {:?}", request.method))?;
    let url = reqwest::Url::parse(&request.url).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("unsupported url scheme {:?}", url.scheme()));
    }
    let headers: Vec<(String, String)> =
        serde_json::from_str(&request.headers_json).map_err(|e| format!("invalid headers: {e}"))?;
    let timeout = if request.timeout_s.is_finite() && request.timeout_s > 0.0 {
        Duration::from_secs_f64(request.timeout_s).min(MAX_TIMEOUT)
    } else {
        Duration::from_secs(30)
    };
    let mut builder = client.request(method, url).timeout(timeout);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let mut response = builder.send().await.map_err(describe)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("response body larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

/// A transport error without the URL's query (it may carry credentials).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "failed to read the response"
    } else {
        "request failed"
    };
    let host = error
        .url()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if host.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({host})")
    }
}
