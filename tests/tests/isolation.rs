//! Tenant isolation (issue 5), at both layers:
//!
//! - the API: every documented operation with a path parameter is called with tenant A's
//!   admin key on tenant B's ids and names, and answers 404 (existence does not leak); lists
//!   filtered on B's values come back empty; afterwards B's case, run, key, secret and
//!   playbook are as they were;
//! - the database: every table with a `tenant_id` (and `tenants`) has row-level security
//!   enabled and forced; the services' role owns nothing and cannot bypass it; as that role,
//!   a transaction with no tenant set reads zero rows everywhere, one with tenant A reads
//!   none of B's rows and cannot write one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, Row};
use tocsin_store::keys::KeyKind;
use tocsin_tests::{TENANT, TestStack};

const OTHER: &str = "other";

const PLAYBOOKS: &str = r#"
from tocsin import playbook, approval

@playbook(when={"source": "edr"})
async def contain(alert, run):
    await run.case.add_tag("edr")
    ok = await approval("Contain?", timeout="1h", default="deny")
    return {"ok": ok}

@playbook(trigger="manual")
async def other_only(alert, run):
    return {}
"#;

/// Tenant A's bundle: the same alert playbook, without B's `other_only`.
const PLAYBOOKS_A: &str = r#"
from tocsin import playbook, approval

@playbook(when={"source": "edr"})
async def contain(alert, run):
    await run.case.add_tag("edr")
    ok = await approval("Contain?", timeout="1h", default="deny")
    return {"ok": ok}
"#;

async fn call(
    stack: &TestStack,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    stack.call_as(key, None, method, path, body).await
}

/// What tenant B owns, by path-parameter meaning.
struct Other {
    api_key: String,
    alert: String,
    case: String,
    run: String,
    approval: String,
    observable: String,
    key_id: String,
    webhook_secret: String,
}

async fn populate_other(stack: &TestStack) -> Other {
    stack.store.ensure_tenant(OTHER, "Other").await.unwrap();
    let ingest_key = stack
        .store
        .create_key(OTHER, KeyKind::Ingest, "b ingest")
        .await
        .unwrap()
        .secret;
    let api = stack
        .store
        .create_key(OTHER, KeyKind::Api, "b api")
        .await
        .unwrap();
    let dir = stack.dir.path().join("other-playbooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pb.py"), PLAYBOOKS).unwrap();
    tocsin_stack::stack::deploy_playbooks(&stack.store, &stack.config.worker, OTHER, &dir, "b")
        .await
        .unwrap();
    let master = tocsin_store::secrets::MasterKey::from_base64(
        stack.config.secrets.master_key.as_ref().unwrap().expose(),
    )
    .unwrap();
    stack
        .store
        .set_secret(&master, OTHER, "b_only_secret", "b-secret-value")
        .await
        .unwrap();
    stack
        .store
        .put_mapping(
            OTHER,
            "b-only-source",
            &json!({"title": "$.t", "severity": {"value": "low"}}),
            "b",
        )
        .await
        .unwrap();
    let (webhook_secret, _) = stack
        .store
        .create_webhook_secret(&master, OTHER, "b")
        .await
        .unwrap();

    let response = stack
        .http
        .post(format!("{}/v1/alerts", stack.ingest_url))
        .bearer_auth(&ingest_key)
        .body(
            json!({"title": "b alert", "severity": "high", "source": "edr",
                   "observables": [{"type": "ip", "value": "198.51.100.77"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let ids: Value = response.json().await.unwrap();
    let alert = ids["alert_ids"][0].as_str().unwrap().to_owned();

    // Wait, as B, for the run to ask for its approval.
    let start = std::time::Instant::now();
    let (case, run, approval) = loop {
        let (status, a) = call(
            stack,
            &api.secret,
            Method::GET,
            &format!("/v1/alerts/{alert}"),
            None,
        )
        .await;
        if status == 200 && a["runs"][0]["status"] == "waiting_approval" {
            let (_, approvals) = call(stack, &api.secret, Method::GET, "/v1/approvals", None).await;
            break (
                a["case_id"].as_str().unwrap().to_owned(),
                a["runs"][0]["id"].as_str().unwrap().to_owned(),
                approvals["approvals"][0]["id"].as_str().unwrap().to_owned(),
            );
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "B's run never waited: {a:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (_, observables) = call(
        stack,
        &api.secret,
        Method::GET,
        "/v1/observables?value=198.51.100.77",
        None,
    )
    .await;
    Other {
        api_key: api.secret,
        alert,
        case,
        run,
        approval,
        observable: observables["observables"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        key_id: api.id.to_string(),
        webhook_secret: webhook_secret.id.to_string(),
    }
}

/// A valid body for each mutating operation, so that a 404 is about the id, not the body.
fn body_for(method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("PATCH", "/v1/cases/{id}") => Some(json!({"version": 1, "status": "in_progress"})),
        ("POST", "/v1/cases/{id}/comments") => Some(json!({"text": "from A"})),
        ("POST", "/v1/approvals/{id}") => Some(json!({"decision": "approve"})),
        ("POST", "/v1/runs/{id}/steps/{seq}/resolve") => Some(json!({"result": null})),
        ("PUT", _) => Some(json!({"value": "x"})),
        ("POST" | "PATCH", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_ids_answer_404_everywhere_and_nothing_of_it_changes() {
    let stack = TestStack::start(
        tocsin_tests::options!()
            .playbook("pb.py", PLAYBOOKS_A)
            .secret("a_secret", "a-secret-value"),
    )
    .await
    .unwrap();
    let b = populate_other(&stack).await;
    let doc: Value = serde_json::from_str(include_str!("../../api/openapi.json")).unwrap();

    let mut tried = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        let owner = template.split('/').nth(2).unwrap();
        let path = match owner {
            "cases" => template.replace("{id}", &b.case),
            "alerts" => template.replace("{id}", &b.alert),
            "runs" => template.replace("{id}", &b.run).replace("{seq}", "1"),
            "approvals" => template.replace("{id}", &b.approval),
            "observables" => template.replace("{id}", &b.observable),
            "keys" => template.replace("{id}", &b.key_id),
            "webhook-secrets" => template.replace("{id}", &b.webhook_secret),
            "secrets" => template.replace("{name}", "b_only_secret"),
            "playbooks" => template.replace("{name}", "other_only"),
            "mappings" => template.replace("{source}", "b-only-source"),
            other => panic!("no tenant-B value for {template} ({other}): extend this test"),
        };
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if method == "PUT" && matches!(owner, "secrets" | "mappings") {
                // Writing a secret or mapping of that name creates A's own; B's is checked below.
                continue;
            }
            let (status, body) = call(
                &stack,
                &stack.api_key,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
                body_for(&method, template),
            )
            .await;
            assert_eq!(status, 404, "{method} {path} as tenant A: {body:#}");
            tried += 1;
        }
    }
    assert!(tried >= 15, "only {tried} operations tried");

    // Lists filtered on B's values are empty for A.
    for (path, list) in [
        (format!("/v1/alerts?case_id={}", b.case), "alerts"),
        ("/v1/runs?playbook=other_only".to_owned(), "runs"),
        ("/v1/runs?playbook=contain".to_owned(), "runs"),
        (
            "/v1/observables?value=198.51.100.77".to_owned(),
            "observables",
        ),
        ("/v1/cases?tag=edr".to_owned(), "cases"),
    ] {
        let (status, body) = call(&stack, &stack.api_key, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body:#}");
        assert_eq!(body[list], json!([]), "{path} as tenant A: {body:#}");
    }
    let (_, approvals) = call(&stack, &stack.api_key, Method::GET, "/v1/approvals", None).await;
    assert_eq!(approvals["approvals"], json!([]), "{approvals:#}");
    let (_, secrets) = call(&stack, &stack.api_key, Method::GET, "/v1/secrets", None).await;
    assert!(
        !secrets.to_string().contains("b_only_secret"),
        "{secrets:#}"
    );

    // B's things are as they were.
    let get = |path: String| {
        let stack = &stack;
        let key = b.api_key.clone();
        async move {
            let (status, body) = call(stack, &key, Method::GET, &path, None).await;
            assert_eq!(status, 200, "{path} as B: {body:#}");
            body
        }
    };
    let case = get(format!("/v1/cases/{}", b.case)).await;
    assert_eq!(case["status"], "new", "{case:#}");
    let timeline = get(format!("/v1/cases/{}/timeline", b.case)).await;
    assert!(!timeline.to_string().contains("from A"), "{timeline:#}");
    let run = get(format!("/v1/runs/{}", b.run)).await;
    assert_eq!(run["status"], "waiting_approval", "{run:#}");
    let approvals = get("/v1/approvals".to_owned()).await;
    assert_eq!(approvals["approvals"][0]["status"], "pending");
    let keys = get("/v1/keys".to_owned()).await;
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_null()),
        "{keys:#}"
    );
    let secrets = get("/v1/secrets".to_owned()).await;
    assert!(secrets.to_string().contains("b_only_secret"), "{secrets:#}");
    let mapping = get("/v1/mappings/b-only-source".to_owned()).await;
    assert_eq!(mapping["current"]["version"], 1);
    let webhook_secrets = get("/v1/webhook-secrets".to_owned()).await;
    assert_eq!(webhook_secrets["items"].as_array().unwrap().len(), 1);
    let playbooks = get("/v1/playbooks".to_owned()).await;
    assert!(
        playbooks["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["enabled"] == true),
        "{playbooks:#}"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row_level_security_is_forced_on_every_tenant_table_and_hides_rows_without_a_tenant() {
    let stack = TestStack::start(
        tocsin_tests::options!()
            .playbook("pb.py", PLAYBOOKS_A)
            .secret("a_secret", "a-secret-value"),
    )
    .await
    .unwrap();
    let _b = populate_other(&stack).await;
    // Tenant A's own alert, case, run and approval.
    let ids = stack
        .accept(json!({"title": "a alert", "severity": "high", "source": "edr"}).to_string())
        .await;
    stack
        .wait_for(&format!("/v1/alerts/{}", ids[0]), |a| {
            a["runs"][0]["status"] == "waiting_approval"
        })
        .await;
    assert_eq!(
        stack.store.session_role().await.unwrap(),
        tocsin_store::APP_ROLE
    );
    let mut owner = sqlx::PgConnection::connect(&stack.database_url)
        .await
        .unwrap();

    // Every table with a tenant_id, and tenants itself, has RLS enabled and forced.
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'
           AND (c.relname = 'tenants' OR EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
         ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(tables.len() >= 22, "{tables:?}");
    for (table, enabled, forced) in &tables {
        assert!(
            *enabled && *forced,
            "{table}: enabled={enabled} forced={forced}"
        );
    }

    // The application role: not a superuser, no BYPASSRLS, owns nothing.
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(tocsin_store::APP_ROLE)
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
         WHERE r.rolname = $1",
    )
    .bind(tocsin_store::APP_ROLE)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(owned, 0);

    // As the owner (a superuser here) both tenants' rows are there...
    let count = |table: &str, tenant_column: &str| {
        format!("SELECT {tenant_column}, count(*) FROM {table} GROUP BY 1")
    };
    let mut as_owner: BTreeMap<String, BTreeMap<Option<String>, i64>> = BTreeMap::new();
    for (table, _, _) in &tables {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let rows = owner
            .fetch_all(count(table, column).as_str())
            .await
            .unwrap();
        as_owner.insert(
            table.clone(),
            rows.iter()
                .map(|r| (r.get::<Option<String>, _>(0), r.get::<i64, _>(1)))
                .collect(),
        );
    }
    for table in [
        "alerts",
        "cases",
        "runs",
        "run_steps",
        "case_events",
        "approvals",
        "secrets",
    ] {
        let per_tenant = &as_owner[table];
        assert!(
            per_tenant.contains_key(&Some(TENANT.to_owned()))
                && per_tenant.contains_key(&Some(OTHER.to_owned())),
            "{table} should hold rows of both tenants: {per_tenant:?}"
        );
    }

    // ...as the application role with no tenant set, none at all...
    owner
        .execute(format!("SET ROLE {}", tocsin_store::APP_ROLE).as_str())
        .await
        .unwrap();
    for (table, _, _) in &tables {
        let mut tx = owner.begin().await.unwrap();
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} is readable without a tenant");
        tx.rollback().await.unwrap();
    }

    // ...and with tenant A set, exactly A's rows, and no write of B's.
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('tocsin.tenant', $1, true)")
        .bind(TENANT)
        .execute(&mut *tx)
        .await
        .unwrap();
    for (table, _, _) in &tables {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let rows = tx.fetch_all(count(table, column).as_str()).await.unwrap();
        let seen: BTreeMap<Option<String>, i64> = rows
            .iter()
            .map(|r| (r.get::<Option<String>, _>(0), r.get::<i64, _>(1)))
            .collect();
        let expected: BTreeMap<Option<String>, i64> = as_owner[table]
            .iter()
            .filter(|(t, _)| t.as_deref() == Some(TENANT))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        assert_eq!(seen, expected, "{table} as tenant {TENANT}");
    }
    let refused = sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, target) VALUES ($1, 'a', 'b', 'c')",
    )
    .bind(OTHER)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("row-level security"),
        "{refused}"
    );
    drop(tx);
    stack.stop().await.unwrap();
}
