//! Pins that the OpenAPI document served at `GET /v1/openapi.json` matches what a live stack
//! answers: every route is exercised (success and problem answers) and each body validates
//! against the schema the document gives for that path, method, status and content type
//! (formats asserted; schemas forbid undocumented properties). That the document lists
//! exactly the router's routes is pinned by the API crate's route-table test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_tests::TestStack;

const PLAYBOOKS: &str = r#"
from tocsin import playbook, approval

@playbook(when={"source": "gate"})
async def gated(alert, run):
    await run.case.comment("asking")
    await run.case.add_observable("ip", "198.51.100.7")
    ok = await approval("Block it?", timeout="1h")
    return {"approved": ok}

@playbook(trigger="manual")
async def by_hand(alert, run):
    await approval("Really?", timeout="1h")
    return {}
"#;

struct Checker<'a> {
    stack: &'a TestStack,
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Checker<'_> {
    /// Calls `method path` and validates the answer against the document's schema for
    /// `template`; returns status and body.
    async fn check(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .stack
            .http
            .request(method.clone(), format!("{}{path}", self.stack.api_url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        // The media type without parameters (`text/plain; charset=utf-8`).
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let text = response.text().await.unwrap();
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let mut answer = operation["responses"][status.to_string()].clone();
        if let Some(target) = answer.get("$ref").and_then(Value::as_str) {
            answer = self.doc.pointer(&target[1..]).unwrap().clone();
        }
        let schema = answer["content"][&content_type]["schema"].clone();
        assert!(
            schema.is_object(),
            "{method} {path} answered {status} {content_type}, which the document does not describe: {text}"
        );
        let instance: Value = if content_type == "text/plain" {
            Value::String(text.clone())
        } else {
            serde_json::from_str(&text).unwrap()
        };
        let mut root = schema;
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema for {method} {template} {status}: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the document: {errors:#?}\n{instance:#}"
        );
        self.checked
            .insert((method.to_string(), template.to_owned(), status));
        (status, instance)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_answers_validate_against_the_served_openapi_document() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("gate.py", PLAYBOOKS))
        .await
        .unwrap();
    let doc: Value = stack
        .http
        .get(format!("{}/v1/openapi.json", stack.api_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = stack.api_key.clone();
    let key = Some(key.as_str());
    let mut c = Checker {
        stack: &stack,
        doc,
        checked: BTreeSet::new(),
    };
    let ids = stack
        .accept(
            json!({"title": "scanner", "severity": "high", "source": "gate", "source_ref": "g-1",
                   "observables": [{"type": "host", "value": "ws-1"}], "src": "203.0.113.9"})
            .to_string(),
        )
        .await;
    let alert_id = &ids[0];
    let run_id = {
        let alert = stack
            .wait_for(&format!("/v1/alerts/{alert_id}"), |a| {
                a["runs"]
                    .as_array()
                    .is_some_and(|r| r.first().is_some_and(|r| r["status"] == "waiting_approval"))
            })
            .await;
        alert["runs"][0]["id"].as_str().unwrap().to_owned()
    };

    c.check(
        Method::GET,
        "/v1/openapi.json",
        "/v1/openapi.json",
        None,
        None,
    )
    .await;
    c.check(Method::GET, "/healthz", "/healthz", None, None)
        .await;
    c.check(Method::GET, "/readyz", "/readyz", None, None).await;

    let (_, alert) = c
        .check(
            Method::GET,
            "/v1/alerts/{id}",
            &format!("/v1/alerts/{alert_id}"),
            key,
            None,
        )
        .await;
    let case_id = alert["case_id"].as_str().unwrap().to_owned();
    c.check(Method::GET, "/v1/alerts", "/v1/alerts?limit=1", key, None)
        .await;
    c.check(Method::GET, "/v1/cases", "/v1/cases", key, None)
        .await;
    let case_path = format!("/v1/cases/{case_id}");
    let (_, case) = c
        .check(Method::GET, "/v1/cases/{id}", &case_path, key, None)
        .await;
    let version = case["version"].clone();
    c.check(
        Method::PATCH,
        "/v1/cases/{id}",
        &case_path,
        key,
        Some(json!({"version": version, "status": "in_progress", "assignee": "alice"})),
    )
    .await;
    let (status, _) = c
        .check(
            Method::PATCH,
            "/v1/cases/{id}",
            &case_path,
            key,
            Some(json!({"version": version, "assignee": null})),
        )
        .await;
    assert_eq!(status, 409);
    c.check(
        Method::POST,
        "/v1/cases/{id}/comments",
        &format!("{case_path}/comments"),
        key,
        Some(json!({"text": "on it"})),
    )
    .await;
    c.check(
        Method::GET,
        "/v1/cases/{id}/timeline",
        &format!("{case_path}/timeline?limit=2"),
        key,
        None,
    )
    .await;
    let (_, observables) = c
        .check(Method::GET, "/v1/observables", "/v1/observables", key, None)
        .await;
    let observable_id = observables["observables"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.check(
        Method::GET,
        "/v1/observables/{id}",
        &format!("/v1/observables/{observable_id}?case_id={case_id}"),
        key,
        None,
    )
    .await;

    c.check(
        Method::GET,
        "/v1/runs",
        "/v1/runs?playbook=gated",
        key,
        None,
    )
    .await;
    c.check(
        Method::GET,
        "/v1/runs/{id}",
        &format!("/v1/runs/{run_id}"),
        key,
        None,
    )
    .await;
    let (_, approvals) = c
        .check(
            Method::GET,
            "/v1/approvals",
            "/v1/approvals?status=pending",
            key,
            None,
        )
        .await;
    let approval_id = approvals["approvals"][0]["id"].as_str().unwrap().to_owned();
    c.check(
        Method::POST,
        "/v1/approvals/{id}",
        &format!("/v1/approvals/{approval_id}"),
        key,
        Some(json!({"decision": "approve", "comment": "go"})),
    )
    .await;
    let (status, started) = c
        .check(
            Method::POST,
            "/v1/runs",
            "/v1/runs",
            key,
            Some(json!({"playbook": "by_hand", "alert_id": alert_id})),
        )
        .await;
    assert_eq!(status, 202);
    let manual = started["run_id"].as_str().unwrap().to_owned();
    stack
        .wait_for(&format!("/v1/runs/{manual}"), |r| {
            r["status"] == "waiting_approval"
        })
        .await;
    let (status, _) = c
        .check(
            Method::POST,
            "/v1/runs/{id}/cancel",
            &format!("/v1/runs/{manual}/cancel"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::POST,
            "/v1/runs/{id}/retry",
            &format!("/v1/runs/{manual}/retry"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = c
        .check(
            Method::POST,
            "/v1/runs/{id}/steps/{seq}/resolve",
            &format!("/v1/runs/{run_id}/steps/1/resolve"),
            key,
            Some(json!({"result": null})),
        )
        .await;
    assert_eq!(
        status, 409,
        "only steps of needs-review runs can be resolved"
    );

    c.check(
        Method::GET,
        "/v1/grouping-policy",
        "/v1/grouping-policy",
        key,
        None,
    )
    .await;
    c.check(
        Method::PUT,
        "/v1/grouping-policy",
        "/v1/grouping-policy",
        key,
        Some(json!({"window_seconds": 600})),
    )
    .await;
    c.check(
        Method::GET,
        "/v1/grouping-policy/versions",
        "/v1/grouping-policy/versions",
        key,
        None,
    )
    .await;

    // Problem answers.
    let missing = "00000000-0000-0000-0000-000000000000";
    let (status, _) = c
        .check(
            Method::GET,
            "/v1/cases/{id}",
            &format!("/v1/cases/{missing}"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .check(Method::GET, "/v1/cases", "/v1/cases", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = c
        .check(Method::GET, "/v1/cases", "/v1/cases?limit=0", key, None)
        .await;
    assert_eq!(status, 400);

    // Administration: keys, secrets, the audit log, and a 403 for a key below admin.
    let (status, created) = c
        .check(
            Method::POST,
            "/v1/keys",
            "/v1/keys",
            key,
            Some(json!({"role": "viewer", "name": "openapi"})),
        )
        .await;
    assert_eq!(status, 201);
    let viewer = created["key"].as_str().unwrap().to_owned();
    let (status, _) = c
        .check(Method::GET, "/v1/keys", "/v1/keys", key, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(Method::GET, "/v1/keys", "/v1/keys", Some(&viewer), None)
        .await;
    assert_eq!(status, 403);
    let key_id = created["id"].as_str().unwrap();
    let (status, _) = c
        .check(
            Method::DELETE,
            "/v1/keys/{id}",
            &format!("/v1/keys/{key_id}"),
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::PUT,
            "/v1/secrets/{name}",
            "/v1/secrets/openapi_token",
            key,
            Some(json!({"value": "t0ken"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(Method::GET, "/v1/secrets", "/v1/secrets", key, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::DELETE,
            "/v1/secrets/{name}",
            "/v1/secrets/openapi_token",
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(Method::GET, "/v1/audit", "/v1/audit?limit=10", key, None)
        .await;
    assert_eq!(status, 200);

    let (status, listed) = c
        .check(Method::GET, "/v1/playbooks", "/v1/playbooks", key, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed:#}");
    for verb in ["disable", "enable"] {
        let (status, _) = c
            .check(
                Method::POST,
                &format!("/v1/playbooks/{{name}}/{verb}"),
                &format!("/v1/playbooks/by_hand/{verb}"),
                key,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = c
        .check(
            Method::POST,
            "/v1/playbooks/{name}/enable",
            "/v1/playbooks/no_such_playbook/enable",
            key,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);

    let (status, created) = c
        .check(
            Method::POST,
            "/v1/webhook-secrets",
            "/v1/webhook-secrets",
            key,
            None,
        )
        .await;
    assert_eq!(status, 201, "{created:#}");
    let (status, _) = c
        .check(
            Method::GET,
            "/v1/webhook-secrets",
            "/v1/webhook-secrets",
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::PUT,
            "/v1/webhook-settings",
            "/v1/webhook-settings",
            key,
            Some(json!({"require_signatures": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::DELETE,
            "/v1/webhook-secrets/{id}",
            &format!("/v1/webhook-secrets/{}", created["id"].as_str().unwrap()),
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);

    let (status, _) = c
        .check(
            Method::GET,
            "/v1/rejected-events",
            "/v1/rejected-events?limit=5",
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);

    let (status, _) = c
        .check(
            Method::PUT,
            "/v1/mappings/{source}",
            "/v1/mappings/acme-edr",
            key,
            Some(json!({"title": "$.name", "severity": {"value": "high"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::PUT,
            "/v1/mappings/{source}",
            "/v1/mappings/acme-edr",
            key,
            Some(json!({"severity": "$.level"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .check(Method::GET, "/v1/mappings", "/v1/mappings", key, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            Method::GET,
            "/v1/mappings/{source}",
            "/v1/mappings/acme-edr",
            key,
            None,
        )
        .await;
    assert_eq!(status, 200);

    // Every documented operation was exercised at least once.
    let mut documented = BTreeSet::new();
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let exercised: BTreeSet<(String, String)> = c
        .checked
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let untested: Vec<_> = documented.difference(&exercised).collect();
    assert!(untested.is_empty(), "not exercised: {untested:?}");
    stack.stop().await.unwrap();
}
