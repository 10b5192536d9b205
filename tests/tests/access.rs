//! Roles, keys, secrets and the audit log through the real API (issue 5): each role can do
//! exactly what it should and gets 403 otherwise; revoked and expired keys stop working at
//! once; an operator key acts in the tenant it names; secret values never come back; every
//! mutation is audited; another tenant's keys, secrets and audit entries are out of reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_store::keys::Role;
use tocsin_tests::TestStack;

async fn call(
    stack: &TestStack,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_as(stack, key, None, method, path, body).await
}

async fn call_as(
    stack: &TestStack,
    key: &str,
    tenant: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    stack.call_as(key, tenant, method, path, body).await
}

async fn create_key(stack: &TestStack, role: &str, expires_at: Option<String>) -> (String, String) {
    let (status, body) = call(
        stack,
        &stack.api_key,
        Method::POST,
        "/v1/keys",
        Some(json!({"role": role, "name": format!("{role} key"), "expires_at": expires_at})),
    )
    .await;
    assert_eq!(status, 201, "{body:#}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_can_do_exactly_what_it_should() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let (_, viewer) = create_key(&stack, "viewer", None).await;
    let (_, analyst) = create_key(&stack, "analyst", None).await;
    let admin = stack.api_key.clone();
    let nobody = "00000000-0000-0000-0000-000000000000";

    // (method, path, body, least role). A role at or above it gets past the access check
    // (200, 201, 404 for the made-up id...); a role below gets 403.
    let cases: Vec<(Method, String, Option<Value>, Role)> = vec![
        (Method::GET, "/v1/cases".into(), None, Role::Viewer),
        (Method::GET, "/v1/runs".into(), None, Role::Viewer),
        (
            Method::GET,
            "/v1/grouping-policy".into(),
            None,
            Role::Viewer,
        ),
        (
            Method::PATCH,
            format!("/v1/cases/{nobody}"),
            Some(json!({"status": "in_progress"})),
            Role::Analyst,
        ),
        (
            Method::POST,
            format!("/v1/cases/{nobody}/comments"),
            Some(json!({"text": "hi"})),
            Role::Analyst,
        ),
        (
            Method::POST,
            format!("/v1/approvals/{nobody}"),
            Some(json!({"decision": "approve"})),
            Role::Analyst,
        ),
        (
            Method::POST,
            format!("/v1/runs/{nobody}/cancel"),
            Some(json!({})),
            Role::Analyst,
        ),
        (
            Method::PUT,
            "/v1/grouping-policy".into(),
            Some(json!({})),
            Role::Admin,
        ),
        (Method::GET, "/v1/keys".into(), None, Role::Admin),
        (Method::GET, "/v1/secrets".into(), None, Role::Admin),
        (
            Method::PUT,
            "/v1/secrets/matrix_secret".into(),
            Some(json!({"value": "v"})),
            Role::Admin,
        ),
        (Method::GET, "/v1/audit".into(), None, Role::Admin),
    ];
    for (method, path, body, least) in &cases {
        for (role, key) in [
            (Role::Viewer, &viewer),
            (Role::Analyst, &analyst),
            (Role::Admin, &admin),
        ] {
            let (status, answer) = call(&stack, key, method.clone(), path, body.clone()).await;
            if role >= *least {
                assert!(
                    ![401, 403].contains(&status),
                    "{} may {method} {path}: got {status} {answer:#}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    403,
                    "{} may not {method} {path}: {answer:#}",
                    role.as_str()
                );
                assert!(
                    answer["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains(least.as_str())),
                    "the 403 names the role needed: {answer:#}"
                );
            }
        }
    }
    // An ingest key is not an API key at all.
    let (status, _) = call(&stack, &stack.ingest_key, Method::GET, "/v1/cases", None).await;
    assert_eq!(status, 401);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_and_expired_keys_stop_working_and_operators_name_the_tenant() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let (viewer_id, viewer) = create_key(&stack, "viewer", None).await;
    assert_eq!(
        call(&stack, &viewer, Method::GET, "/v1/cases", None)
            .await
            .0,
        200
    );
    let (status, revoked) = call(
        &stack,
        &stack.api_key,
        Method::DELETE,
        &format!("/v1/keys/{viewer_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked:#}");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        call(&stack, &viewer, Method::GET, "/v1/cases", None)
            .await
            .0,
        401
    );

    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, expiring) = create_key(&stack, "viewer", Some(soon)).await;
    assert_eq!(
        call(&stack, &expiring, Method::GET, "/v1/cases", None)
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        call(&stack, &expiring, Method::GET, "/v1/cases", None)
            .await
            .0,
        401
    );

    let (status, body) = call(
        &stack,
        &stack.api_key,
        Method::POST,
        "/v1/keys",
        Some(json!({"role": "operator"})),
    )
    .await;
    assert_eq!(
        status, 400,
        "operator keys are not made through a tenant: {body:#}"
    );

    // An MSSP operator key: no tenant of its own, names one per call.
    stack.store.ensure_tenant("other", "Other").await.unwrap();
    let operator = stack
        .store
        .create_role_key(None, Role::Operator, "mssp", None, "test")
        .await
        .unwrap()
        .secret;
    assert_eq!(
        call(&stack, &operator, Method::GET, "/v1/cases", None)
            .await
            .0,
        400
    );
    for tenant in ["default", "other"] {
        let (status, body) = call_as(
            &stack,
            &operator,
            Some(tenant),
            Method::GET,
            "/v1/keys",
            None,
        )
        .await;
        assert_eq!(status, 200, "{body:#}");
    }
    let (status, _) = call_as(
        &stack,
        &operator,
        Some("missing"),
        Method::GET,
        "/v1/cases",
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A tenant key cannot borrow the header.
    let (status, _) = call_as(
        &stack,
        &stack.api_key,
        Some("other"),
        Method::GET,
        "/v1/cases",
        None,
    )
    .await;
    assert_eq!(status, 400);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_come_back_and_every_mutation_is_audited_per_tenant() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let value = "s3cr3t-value-that-must-never-leak";
    let (status, body) = call(
        &stack,
        &stack.api_key,
        Method::PUT,
        "/v1/secrets/vt_api_key",
        Some(json!({"value": value})),
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    let (status, bad) = call(
        &stack,
        &stack.api_key,
        Method::PUT,
        "/v1/secrets/9bad",
        Some(json!({"value": value})),
    )
    .await;
    assert_eq!(status, 400, "{bad:#}");
    let (status, list) = call(&stack, &stack.api_key, Method::GET, "/v1/secrets", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["name"], "vt_api_key");
    assert!(list["items"][0]["updated_at"].is_string());
    let (viewer_id, _) = create_key(&stack, "viewer", None).await;

    // Another tenant's admin sees none of it and can change none of it.
    stack.store.ensure_tenant("other", "Other").await.unwrap();
    let other = stack
        .store
        .create_role_key(Some("other"), Role::Admin, "other admin", None, "test")
        .await
        .unwrap()
        .secret;
    let (_, other_list) = call(&stack, &other, Method::GET, "/v1/secrets", None).await;
    assert_eq!(other_list["items"], json!([]));
    let (status, _) = call(
        &stack,
        &other,
        Method::DELETE,
        "/v1/secrets/vt_api_key",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &stack,
        &other,
        Method::DELETE,
        &format!("/v1/keys/{viewer_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, other_keys) = call(&stack, &other, Method::GET, "/v1/keys", None).await;
    assert!(
        other_keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant_id"] == "other")
    );

    let (status, audit) = call(&stack, &stack.api_key, Method::GET, "/v1/audit", None).await;
    assert_eq!(status, 200);
    let entries = audit["items"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no audit entry {action}: {audit:#}"))
    };
    let put = find("PUT /v1/secrets/{name}");
    assert_eq!(put["target"], "secret:vt_api_key");
    assert!(put["actor"].as_str().unwrap().starts_with("key:tsk_api_"));
    let created = find("POST /v1/keys");
    assert_eq!(created["target"], format!("key:{viewer_id}"));
    assert_eq!(created["after"]["role"], "viewer");
    // Failed mutations are not audited; the other tenant's failed attempts do not show.
    assert_eq!(entries.len(), 2, "{audit:#}");
    let (_, other_audit) = call(&stack, &other, Method::GET, "/v1/audit", None).await;
    assert_eq!(other_audit["items"], json!([]));

    // The value appears in no answer and no audit entry.
    for body in [&list, &audit, &body] {
        assert!(!body.to_string().contains(value), "secret leaked: {body:#}");
    }
    stack.stop().await.unwrap();
}
