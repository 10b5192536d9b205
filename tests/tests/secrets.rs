//! Secrets (issue 5): envelope encryption at rest (AES-256-GCM under a per-tenant data key,
//! wrapped by the master key, never stored in clear), refused when moved to another tenant or
//! name; and a secret value used by a run never shows in any API answer or any service log
//! line, even when the playbook tries to log, return, journal or comment it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::Connection;
use tocsin_store::secrets::{MasterKey, SecretError};
use tocsin_tests::procs::ProcStack;
use tocsin_tests::{TENANT, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_sealed_per_tenant_and_a_moved_ciphertext_or_data_key_does_not_open() {
    let stack = TestStack::start(tocsin_tests::options!().secret("vt_key", "a-clear-value-1"))
        .await
        .unwrap();
    let master =
        MasterKey::from_base64(stack.config.secrets.master_key.as_ref().unwrap().expose()).unwrap();
    let store = &stack.store;
    store.ensure_tenant("other", "Other").await.unwrap();
    store
        .set_secret(&master, "other", "vt_key", "b-clear-value-2")
        .await
        .unwrap();
    assert_eq!(
        store.tenant_secrets(&master, TENANT).await.unwrap()["vt_key"],
        "a-clear-value-1"
    );

    let mut owner = sqlx::PgConnection::connect(&stack.database_url)
        .await
        .unwrap();
    // Nothing in clear; AES-GCM shapes: 96-bit nonces, 128-bit tags, 256-bit wrapped keys.
    let rows: Vec<(String, i16, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT tenant_id, scheme, nonce, ciphertext FROM secrets ORDER BY 1")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for (tenant, scheme, nonce, ciphertext) in &rows {
        assert_eq!((*scheme, nonce.len()), (2, 12), "{tenant}");
        assert_eq!(ciphertext.len(), "a-clear-value-1".len() + 16, "{tenant}");
        assert!(!ciphertext.windows(5).any(|w| w == b"clear"), "{tenant}");
    }
    let keys: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT tenant_id, wrapped FROM tenant_keys ORDER BY 1")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|(_, w)| w.len() == 32 + 16));
    assert_ne!(keys[0].1, keys[1].1);

    // B's ciphertext copied into A (under another name, and over A's own) does not open.
    sqlx::query(
        "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, scheme)
         SELECT $1, 'copied', nonce, ciphertext, scheme FROM secrets WHERE tenant_id = 'other'",
    )
    .bind(TENANT)
    .execute(&mut owner)
    .await
    .unwrap();
    let error = store.tenant_secrets(&master, TENANT).await.unwrap_err();
    assert!(
        matches!(&error, SecretError::Undecryptable { name } if name == "copied"),
        "{error}"
    );
    sqlx::query("DELETE FROM secrets WHERE name = 'copied'")
        .execute(&mut owner)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE secrets a SET nonce = b.nonce, ciphertext = b.ciphertext
         FROM secrets b WHERE a.tenant_id = $1 AND b.tenant_id = 'other' AND a.name = b.name",
    )
    .bind(TENANT)
    .execute(&mut owner)
    .await
    .unwrap();
    assert!(matches!(
        store.tenant_secrets(&master, TENANT).await,
        Err(SecretError::Undecryptable { .. })
    ));
    store
        .set_secret(&master, TENANT, "vt_key", "a-clear-value-1")
        .await
        .unwrap();

    // B's wrapped data key copied over A's does not unwrap for A.
    sqlx::query(
        "UPDATE tenant_keys a SET nonce = b.nonce, wrapped = b.wrapped
         FROM tenant_keys b WHERE a.tenant_id = $1 AND b.tenant_id = 'other'",
    )
    .bind(TENANT)
    .execute(&mut owner)
    .await
    .unwrap();
    assert!(matches!(
        store.tenant_secrets(&master, TENANT).await,
        Err(SecretError::KeyUnwrap)
    ));
    // And another master key opens nothing.
    let wrong = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
    assert!(matches!(
        store.tenant_secrets(&wrong, "other").await,
        Err(SecretError::KeyUnwrap)
    ));
    assert_eq!(
        store.tenant_secrets(&master, "other").await.unwrap()["vt_key"],
        "b-clear-value-2"
    );
    stack.stop().await.unwrap();
}

const TOKEN: &str = "tsk-live-7f3a9c2e51d84b06";

const PLAYBOOK: &str = r#"
from tocsin import playbook, action, http

@action()
async def call_api(secrets) -> dict:
    response = await http.post(
        f"{secrets['api_url']}/api/v1/blocks",
        json={"value": "203.0.113.9"},
        headers={"Authorization": f"Bearer {secrets['api_token']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()

@action()
async def careless(token: str) -> dict:
    return {"echo": token}

@action()
async def fails_loudly(token: str) -> dict:
    raise RuntimeError(f"upstream rejected {token}")

@playbook(when={"source": "edr"})
async def uses_secret(alert, run):
    token = run.secrets["api_token"]
    called = await call_api(run.secrets)
    run.log(f"called with {token}", token=token, nested={"t": [token]})
    await careless(token)
    try:
        await fails_loudly(token)
    except Exception as exc:
        run.log(f"caught: {exc}")
    await run.case.comment(f"token is {token}")
    await run.case.add_tag(token)
    return {"called": called, "leak": token}
"#;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

async fn blocks(State(seen): State<Seen>, headers: HeaderMap) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.0.lock().unwrap().push(auth);
    axum::Json(json!({"id": "blk-1"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_used_by_a_run_never_shows_in_api_answers_or_service_logs() {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/api/v1/blocks", post(blocks))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = ProcStack::start(
        tocsin_tests::proc_options!()
            .playbook("uses_secret.py", PLAYBOOK)
            // Everything the services log, down to debug.
            .env(
                "TOCSIN_TELEMETRY__FILTER",
                "debug,h2=info,hyper=info,sqlx=debug",
            ),
    )
    .await
    .unwrap();
    let put = |name: &str, value: &str| {
        stack
            .http
            .put(format!("{}/v1/secrets/{name}", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&json!({ "value": value }))
            .send()
    };
    assert_eq!(put("api_token", TOKEN).await.unwrap().status(), 200);
    assert_eq!(put("api_url", &fake).await.unwrap().status(), 200);

    let ids = stack
        .post_alert(&json!({"title": "contain", "severity": "high", "source": "edr"}))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let alert = loop {
        if let Some(a) = stack.api(&format!("/v1/alerts/{}", ids[0])).await
            && a["runs"][0]["status"]
                .as_str()
                .is_some_and(|s| !matches!(s, "queued" | "running"))
        {
            break a;
        }
        assert!(start.elapsed().as_secs() < 60, "run did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let run_id = alert["runs"][0]["id"].as_str().unwrap().to_owned();
    let case_id = alert["case_id"].as_str().unwrap().to_owned();
    let run = stack.api(&format!("/v1/runs/{run_id}")).await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    // The secret did its job: the external API got it.
    assert_eq!(*seen.0.lock().unwrap(), vec![format!("Bearer {TOKEN}")]);

    let mut answers = vec![run.clone(), alert];
    for path in [
        format!("/v1/cases/{case_id}"),
        format!("/v1/cases/{case_id}/timeline"),
        "/v1/runs".to_owned(),
        "/v1/secrets".to_owned(),
        "/v1/audit".to_owned(),
    ] {
        answers.push(stack.api(&path).await.unwrap());
    }
    let answers = serde_json::to_string(&answers).unwrap();
    assert!(
        !answers.contains(TOKEN),
        "the secret leaked into an API answer"
    );
    // What the playbook tried to leak is there, masked.
    assert_eq!(run["result"]["leak"], "***");
    assert!(answers.contains("token is ***"), "{answers}");
    assert!(answers.contains("called with ***"), "{answers}");
    assert!(answers.contains("upstream rejected ***"), "{answers}");

    let logs = stack.full_logs();
    assert!(
        logs.contains(&run_id),
        "the logs do not mention the run at all"
    );
    assert!(
        logs.contains("called with ***"),
        "playbook log lines are logged: {}",
        logs.lines()
            .filter(|l| l.contains("playbook"))
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !logs.contains(TOKEN),
        "the secret leaked into a service log"
    );
    stack.stop().await;
}
