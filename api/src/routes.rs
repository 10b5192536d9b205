//! The route table: every route of the API as data, in one place. The router is built from
//! it, and a test checks it against the OpenAPI document (`api/openapi.json`, served at
//! `GET /v1/openapi.json`) in both directions, so the document cannot miss a route or
//! describe one that does not exist.

use axum::Router;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};

use tocsin_store::keys::Role;

use crate::common::{Access, AppState, authorize};
use crate::{
    admin, alerts, approvals, cases, grouping, mappings, observables, playbooks, runs, webhooks,
};

/// The OpenAPI 3.1 document describing every route below.
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

/// One route: method, path (axum syntax, the same as OpenAPI's), who may call it, handler.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(access: Access, method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let handler = match method.as_str() {
        "GET" => get(handler),
        "POST" => post(handler),
        "PUT" => put(handler),
        "PATCH" => patch(handler),
        "DELETE" => delete(handler),
        // A programming error in the table below, caught by the route test.
        _ => MethodRouter::new(),
    };
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Every route of the API.
pub(crate) fn table() -> Vec<Route> {
    use Method as M;
    let viewer = Access::Role(Role::Viewer);
    let analyst = Access::Role(Role::Analyst);
    let admin = Access::Role(Role::Admin);
    let public = Access::Public;
    vec![
        route(viewer, M::GET, "/v1/cases", cases::list_cases),
        route(viewer, M::GET, "/v1/cases/{id}", cases::get_case),
        route(analyst, M::PATCH, "/v1/cases/{id}", cases::patch_case),
        route(
            analyst,
            M::POST,
            "/v1/cases/{id}/comments",
            cases::comment_case,
        ),
        route(
            viewer,
            M::GET,
            "/v1/cases/{id}/timeline",
            cases::case_timeline,
        ),
        route(viewer, M::GET, "/v1/alerts", alerts::list_alerts),
        route(viewer, M::GET, "/v1/alerts/{id}", alerts::get_alert),
        route(
            viewer,
            M::GET,
            "/v1/observables",
            observables::list_observables,
        ),
        route(
            viewer,
            M::GET,
            "/v1/observables/{id}",
            observables::get_observable,
        ),
        route(viewer, M::GET, "/v1/runs", runs::list_runs),
        route(analyst, M::POST, "/v1/runs", runs::start_run),
        route(viewer, M::GET, "/v1/runs/{id}", runs::get_run),
        route(analyst, M::POST, "/v1/runs/{id}/cancel", runs::cancel_run),
        route(analyst, M::POST, "/v1/runs/{id}/retry", runs::retry_run),
        route(
            analyst,
            M::POST,
            "/v1/runs/{id}/steps/{seq}/resolve",
            runs::resolve_step,
        ),
        route(viewer, M::GET, "/v1/approvals", approvals::list_approvals),
        route(
            analyst,
            M::POST,
            "/v1/approvals/{id}",
            approvals::decide_approval,
        ),
        route(viewer, M::GET, "/v1/grouping-policy", grouping::get_policy),
        route(admin, M::PUT, "/v1/grouping-policy", grouping::put_policy),
        route(
            viewer,
            M::GET,
            "/v1/grouping-policy/versions",
            grouping::policy_versions,
        ),
        route(viewer, M::GET, "/v1/playbooks", playbooks::list_playbooks),
        route(
            admin,
            M::POST,
            "/v1/playbooks/{name}/enable",
            playbooks::enable_playbook,
        ),
        route(
            admin,
            M::POST,
            "/v1/playbooks/{name}/disable",
            playbooks::disable_playbook,
        ),
        route(admin, M::GET, "/v1/keys", admin::list_keys),
        route(admin, M::POST, "/v1/keys", admin::create_key),
        route(admin, M::DELETE, "/v1/keys/{id}", admin::revoke_key),
        route(admin, M::GET, "/v1/secrets", admin::list_secrets),
        route(admin, M::PUT, "/v1/secrets/{name}", admin::put_secret),
        route(admin, M::DELETE, "/v1/secrets/{name}", admin::delete_secret),
        route(admin, M::GET, "/v1/audit", admin::list_audit),
        route(
            admin,
            M::GET,
            "/v1/webhook-secrets",
            webhooks::list_webhook_secrets,
        ),
        route(
            admin,
            M::POST,
            "/v1/webhook-secrets",
            webhooks::create_webhook_secret,
        ),
        route(
            admin,
            M::DELETE,
            "/v1/webhook-secrets/{id}",
            webhooks::delete_webhook_secret,
        ),
        route(
            admin,
            M::PUT,
            "/v1/webhook-settings",
            webhooks::put_webhook_settings,
        ),
        route(
            viewer,
            M::GET,
            "/v1/rejected-events",
            webhooks::list_rejected_events,
        ),
        route(viewer, M::GET, "/v1/mappings", mappings::list_mappings),
        route(
            viewer,
            M::GET,
            "/v1/mappings/{source}",
            mappings::get_mapping,
        ),
        route(
            admin,
            M::PUT,
            "/v1/mappings/{source}",
            mappings::put_mapping,
        ),
        route(public, M::GET, "/v1/openapi.json", openapi),
        route(public, M::GET, "/healthz", healthz),
        route(public, M::GET, "/readyz", crate::readyz),
    ]
}

/// The router serving [`table`].
pub(crate) fn router(state: AppState) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, r| {
            tracing::trace!(method = %r.method, path = r.path, "route");
            let handler = match r.access {
                Access::Public => r.handler,
                Access::Role(role) => r.handler.layer(axum::middleware::from_fn_with_state(
                    (state.clone(), role, r.path),
                    authorize,
                )),
            };
            router.route(r.path, handler)
        })
        .route_layer(axum::middleware::from_fn(tocsin_http::traced))
        .with_state(state)
}

/// `GET /v1/openapi.json` (no key needed).
async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `GET /healthz`: 200 while the process runs.
async fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tocsin_store::Store;
    use tower::ServiceExt;

    use super::*;

    const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("api/openapi.json is JSON")
    }

    /// Every `$ref` string anywhere under `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("$ref", Value::String(target)) => out.push(target),
                        _ => refs(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
            _ => {}
        }
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_of_the_router() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                documented.insert((method.to_uppercase(), path.clone()));
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no response"
                );
                // Every `{param}` of the path is declared as a path parameter.
                let declared: BTreeSet<String> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| match p.get("$ref").and_then(Value::as_str) {
                        Some(r) => doc.pointer(&r[1..]).cloned().unwrap(),
                        None => p.clone(),
                    })
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                let in_path: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(declared, in_path, "{method} {path} path parameters");
            }
        }
        let routed: BTreeSet<(String, String)> = table()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json describes routes that do not exist: {extra:?}"
        );
        assert_eq!(routed.len(), table().len(), "a route is listed twice");
        // The role each operation documents is the one the router enforces.
        for r in table() {
            let operation = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let documented = operation["x-tocsin-role"].as_str();
            match r.access {
                Access::Public => assert_eq!(documented, None, "{} {}", r.method, r.path),
                Access::Role(role) => {
                    assert_eq!(documented, Some(role.as_str()), "{} {}", r.method, r.path);
                    assert!(
                        operation["responses"]["403"].is_object(),
                        "{} {} documents no 403",
                        r.method,
                        r.path
                    );
                }
            }
        }

        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        for target in targets {
            let pointer = target.strip_prefix('#').expect("local $ref");
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
        }
    }

    #[tokio::test]
    async fn every_route_of_the_table_is_served_and_asks_for_a_key() {
        // Never connects: only /readyz touches the database, and it may fail.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let app = router(AppState(Arc::new(Store::from_pool(pool)), None));
        for route in table() {
            let uri = route
                .path
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{seq}", "1")
                .replace("{name}", "token");
            let request = Request::builder()
                .method(route.method.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let expected = match route.path {
                "/healthz" | "/v1/openapi.json" => StatusCode::OK,
                "/readyz" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            assert_eq!(response.status(), expected, "{} {uri}", route.method);
            if expected == StatusCode::UNAUTHORIZED {
                assert_eq!(
                    response.headers()[header::CONTENT_TYPE],
                    "application/problem+json"
                );
            }
        }
        let unknown = Request::builder()
            .uri("/v1/nothing")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(unknown).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
}
