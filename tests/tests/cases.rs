//! Pins case management end to end (alerts posted through ingest, real scheduler, worker and
//! API): a burst of related alerts lands in one case with the grouping reason on its
//! timeline while unrelated ones do not, grouped alerts start no runs unless the policy says
//! so, the policy is versioned, observables are extracted from raw fields and counted across
//! cases, analysts update cases with optimistic concurrency (a stale version is 409), playbook
//! case operations and comments land on the timeline with their actor, lists page through
//! every case exactly once, and another tenant sees none of it (404).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_tests::TestStack;

/// Sends a request with the stack's API key (or `key`), returning status and JSON body.
async fn call(
    stack: &TestStack,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = stack
        .http
        .request(method, format!("{}{path}", stack.api_url))
        .bearer_auth(key.unwrap_or(&stack.api_key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until every alert is recorded with a case; returns alert id -> case id.
async fn cases_of(stack: &TestStack, ids: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in ids {
        let alert = stack
            .wait_for(&format!("/v1/alerts/{id}"), |a| a["case_id"].is_string())
            .await;
        out.insert(id.clone(), alert["case_id"].as_str().unwrap().to_owned());
    }
    out
}

fn ndjson(alerts: &[Value]) -> String {
    alerts
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every event of a case timeline, following `next_cursor`.
async fn timeline(stack: &TestStack, case_id: &str, page_size: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/cases/{case_id}/timeline?limit={page_size}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = stack.api(&path).await.unwrap();
        let batch = page["events"].as_array().unwrap();
        assert!(batch.len() <= page_size);
        events.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

const TRIAGE: &str = r#"
from tocsin import playbook

@playbook(when={"source": "edr"})
async def triage(alert, run):
    return {"alert": alert.id}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn related_alerts_group_into_one_case_with_reasons_and_observables_are_shared() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("triage.py", TRIAGE))
        .await
        .unwrap();
    let beacon = |n: u32, title: &str, host: &str| {
        json!({"title": title, "severity": "high", "source": "edr", "source_ref": format!("b-{n}"),
               "observables": [{"type": "host", "value": host}],
               "dst_ip": "203.0.113.50", "url": "http://Evil.example.com/stage2"})
    };
    // One request: the scheduler records these concurrently.
    let mut burst: Vec<Value> = (1..=5).map(|n| beacon(n, "Beacon", "ws-1")).collect();
    burst.push(beacon(6, "Beacon", "ws-2"));
    burst.push(beacon(7, "Other", "ws-1"));
    let ids = stack.accept(ndjson(&burst)).await;
    let cases = cases_of(&stack, &ids).await;
    let group = &cases[&ids[0]];
    for id in &ids[..5] {
        assert_eq!(&cases[id], group, "related alerts share a case");
    }
    let distinct: BTreeSet<&String> = cases.values().collect();
    assert_eq!(
        distinct.len(),
        3,
        "another host or title opens its own case"
    );

    let case = stack.api(&format!("/v1/cases/{group}")).await.unwrap();
    assert_eq!(case["alert_count"], 5);
    assert_eq!(case["alerts"].as_array().unwrap().len(), 5);
    assert_eq!(case["status"], "new");
    let runs = case["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        1,
        "only the first alert of a case starts runs: {case:#}"
    );

    let events = timeline(&stack, group, 4).await;
    let added = of_kind(&events, "alert_added");
    assert_eq!(added.len(), 5);
    assert_eq!(added[0]["data"]["reason"], "new case");
    for event in &added[1..] {
        assert_eq!(event["data"]["reason"], "grouped", "{event:#}");
        assert_eq!(
            event["data"]["fingerprint_fields"],
            json!(["source", "title", "observable:host|user|ip"])
        );
        assert_eq!(
            event["data"]["matched"],
            json!({"source": "edr", "title": "Beacon", "observable:host|user|ip": "host:ws-1"})
        );
        assert_eq!(event["actor"], "system");
    }
    let skipped = of_kind(&events, "playbooks_skipped");
    assert_eq!(skipped.len(), 4);
    assert_eq!(skipped[0]["data"]["playbooks"], json!(["triage"]));
    assert_eq!(of_kind(&events, "playbooks_matched").len(), 1);

    // Observables: normalized and raw-extracted, once per tenant, counted across cases.
    let observables = case["observables"].as_array().unwrap();
    let find = |kind: &str, value: &str| {
        observables
            .iter()
            .find(|o| o["type"] == kind && o["value"] == value)
            .unwrap_or_else(|| panic!("{kind} {value} missing: {observables:#?}"))
            .clone()
    };
    let ip = find("ip", "203.0.113.50");
    assert_eq!(ip["seen_in_other_cases"], 2);
    assert_eq!(find("host", "ws-1")["seen_in_other_cases"], 1);
    assert_eq!(find("domain", "evil.example.com")["seen_in_other_cases"], 2);
    find("url", "http://Evil.example.com/stage2");
    let ip_id = ip["id"].as_str().unwrap();
    let detail = stack
        .api(&format!("/v1/observables/{ip_id}?case_id={group}"))
        .await
        .unwrap();
    assert_eq!(detail["seen_in_other_cases"], 2);
    assert_eq!(detail["case_count"], 3);
    assert_eq!(detail["alert_count"], 7);
    assert_eq!(detail["cases"].as_array().unwrap().len(), 3);
    let listed = stack
        .api("/v1/observables?type=ip&value=203.0.113.")
        .await
        .unwrap();
    let listed = listed["observables"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["id"], ip["id"]);

    let in_case = stack
        .api(&format!("/v1/alerts?case_id={group}&limit=500"))
        .await
        .unwrap();
    assert_eq!(in_case["alerts"].as_array().unwrap().len(), 5);
    let triage_runs = stack.api("/v1/runs?playbook=triage").await.unwrap();
    assert_eq!(
        triage_runs["runs"].as_array().unwrap().len(),
        3,
        "one per case"
    );

    // An exact duplicate is counted, not grouped again and starts nothing.
    stack.accept(burst[0].to_string()).await;
    stack
        .wait_for(&format!("/v1/alerts/{}", ids[0]), |a| {
            a["duplicate_count"] == 1
        })
        .await;
    let case = stack.api(&format!("/v1/cases/{group}")).await.unwrap();
    assert_eq!(case["alert_count"], 5);
    assert_eq!(case["runs"].as_array().unwrap().len(), 1);

    // A new policy version: grouped alerts trigger, at most two alerts per case.
    let (status, policy) = call(&stack, None, Method::GET, "/v1/grouping-policy", None).await;
    assert_eq!((status, &policy["version"]), (200, &json!(0)));
    let (status, _) = call(
        &stack,
        None,
        Method::PUT,
        "/v1/grouping-policy",
        Some(json!({"fields": ["colour"]})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, policy) = call(
        &stack,
        None,
        Method::PUT,
        "/v1/grouping-policy",
        Some(json!({"version": 0, "grouped_alerts_trigger": true, "max_group_size": 2})),
    )
    .await;
    assert_eq!(status, 200, "{policy:#}");
    assert_eq!(policy["version"], 1);
    assert_eq!(policy["window_seconds"], 3600);
    assert!(
        policy["created_by"]
            .as_str()
            .unwrap()
            .starts_with("key:tsk_api_")
    );
    let (status, _) = call(
        &stack,
        None,
        Method::PUT,
        "/v1/grouping-policy",
        Some(json!({"version": 0, "max_group_size": 3})),
    )
    .await;
    assert_eq!(status, 409, "a change based on an old version is refused");
    let versions = stack.api("/v1/grouping-policy/versions").await.unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);

    let more: Vec<Value> = (8..=10).map(|n| beacon(n, "Beacon", "ws-9")).collect();
    let more_ids = stack.accept(ndjson(&more)).await;
    let more_cases = cases_of(&stack, &more_ids).await;
    let mut sizes: Vec<usize> = more_cases
        .values()
        .fold(BTreeMap::<&String, usize>::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        })
        .into_values()
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2], "a full case takes no more alerts");
    for id in &more_ids {
        stack
            .wait_for(&format!("/v1/alerts/{id}"), |a| {
                a["runs"].as_array().is_some_and(|r| r.len() == 1)
            })
            .await;
    }
    stack.stop().await.unwrap();
}

const CONTAIN: &str = r#"
from tocsin import playbook

@playbook(when={"source": "phish"})
async def contain(alert, run):
    await run.case.comment("looking into it")
    await run.case.add_tag("phishing")
    await run.case.add_observable("domain", "Bad.Example.org")
    await run.case.set_severity("critical")
    return {}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analysts_update_cases_with_versions_and_the_timeline_records_everyone() {
    let stack = TestStack::start(tocsin_tests::options!().playbook("contain.py", CONTAIN))
        .await
        .unwrap();
    let ids = stack
        .accept(
            json!({"title": "Reported phish", "severity": "medium", "source": "phish",
                   "source_ref": "p-1", "mail": {"from": "ceo@spoofed.example.net"}})
            .to_string(),
        )
        .await;
    let run = stack.wait_run(&ids[0], "contain").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let run_actor = format!("run:{}", run["id"].as_str().unwrap());
    let case_id = run["case_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/cases/{case_id}");

    let case = stack.api(&path).await.unwrap();
    assert_eq!(case["severity"], "critical");
    assert_eq!(case["tags"], json!(["phishing"]));
    let values: BTreeSet<String> = case["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}:{}",
                o["type"].as_str().unwrap(),
                o["value"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "domain:bad.example.org",
        "email:ceo@spoofed.example.net",
        "domain:spoofed.example.net",
    ] {
        assert!(values.contains(expected), "{expected} missing: {values:?}");
    }
    let version = case["version"].as_i64().unwrap();

    let (status, updated) = call(
        &stack,
        None,
        Method::PATCH,
        &path,
        Some(json!({"version": version, "status": "in_progress", "assignee": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{updated:#}");
    assert_eq!(updated["version"], version + 1);
    assert_eq!(updated["assignee"], "alice");
    let (status, problem) = call(
        &stack,
        None,
        Method::PATCH,
        &path,
        Some(json!({"version": version, "severity": "low"})),
    )
    .await;
    assert_eq!(status, 409, "a stale version is refused: {problem:#}");
    assert_eq!(problem["status"], 409);
    let current = version + 1;
    let (status, _) = call(
        &stack,
        None,
        Method::PATCH,
        &path,
        Some(json!({"version": current, "status": "resolved"})),
    )
    .await;
    assert_eq!(status, 400, "resolving needs a determination");
    let (status, _) = call(
        &stack,
        None,
        Method::PATCH,
        &path,
        Some(json!({"version": current, "status": "new"})),
    )
    .await;
    assert_eq!(status, 409, "in_progress cannot go back to new");
    let (status, comment) = call(
        &stack,
        None,
        Method::POST,
        &format!("{path}/comments"),
        Some(json!({"text": "confirmed phish"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(comment["kind"], "comment");
    let (status, resolved) = call(
        &stack,
        None,
        Method::PATCH,
        &path,
        Some(
            json!({"version": current, "status": "resolved", "determination": "true_positive",
                    "tags": ["phishing", "confirmed"]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{resolved:#}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["determination"], "true_positive");
    assert_eq!(resolved["version"], current + 1);

    let events = timeline(&stack, &case_id, 3).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let actor = e["actor"].as_str().unwrap();
            let actor = if actor.starts_with("key:tsk_api_") {
                "key"
            } else if actor == run_actor {
                "run"
            } else {
                actor
            };
            (e["kind"].as_str().unwrap().to_owned(), actor.to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("alert_added", "system"),
        ("playbooks_matched", "system"),
        ("comment", "run"),
        ("tag_added", "run"),
        ("observable_added", "run"),
        ("severity_changed", "run"),
        ("status_changed", "key"),
        ("assignee_changed", "key"),
        ("comment", "key"),
        ("status_changed", "key"),
        ("tags_changed", "key"),
    ]
    .iter()
    .map(|(k, a)| ((*k).to_owned(), (*a).to_owned()))
    .collect();
    assert_eq!(summary, expected, "{events:#?}");
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64())
    );
    assert_eq!(events[8]["data"]["text"], "confirmed phish");
    assert_eq!(
        events[9]["data"],
        json!({"from": "in_progress", "to": "resolved", "determination": "true_positive"})
    );
    assert_eq!(events[10]["data"]["added"], json!(["confirmed"]));

    // Another tenant: nothing of this one exists.
    stack.store.ensure_tenant("other", "Other").await.unwrap();
    let other = stack
        .store
        .create_key("other", tocsin_store::keys::KeyKind::Api, "t")
        .await
        .unwrap()
        .secret;
    let observable_id = case["observables"][0]["id"].as_str().unwrap().to_owned();
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"version": current + 1, "severity": "low"})),
        ),
        (
            Method::POST,
            format!("{path}/comments"),
            Some(json!({"text": "x"})),
        ),
        (Method::GET, format!("{path}/timeline"), None),
        (
            Method::GET,
            format!("/v1/observables/{observable_id}"),
            None,
        ),
        (Method::GET, format!("/v1/alerts/{}", ids[0]), None),
        (
            Method::GET,
            format!("/v1/runs/{}", run["id"].as_str().unwrap()),
            None,
        ),
    ] {
        let (status, _) = call(&stack, Some(&other), method.clone(), &p, body).await;
        assert_eq!(status, 404, "{method} {p} with another tenant's key");
    }
    for list in ["/v1/cases", "/v1/alerts", "/v1/runs", "/v1/observables"] {
        let (status, page) = call(&stack, Some(&other), Method::GET, list, None).await;
        assert_eq!(status, 200);
        let key = list.trim_start_matches("/v1/");
        assert_eq!(page[key], json!([]), "{list} of another tenant");
    }
    let (status, _) = call(
        &stack,
        Some(&other),
        Method::GET,
        "/v1/cases?tag=phishing",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let unchanged = stack.api(&path).await.unwrap();
    assert_eq!(unchanged["version"], current + 1);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn case_and_alert_lists_page_through_every_row_exactly_once_with_filters() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let severities = ["low", "high", "critical"];
    let alerts: Vec<Value> = (0..23)
        .map(|n| {
            json!({"title": format!("alert {n}"), "severity": severities[n % 3],
                   "source": "pager", "source_ref": format!("p-{n}")})
        })
        .collect();
    let ids = stack.accept(ndjson(&alerts)).await;
    let cases = cases_of(&stack, &ids).await;
    let expected: BTreeSet<&String> = cases.values().collect();
    assert_eq!(expected.len(), 23);

    async fn all_pages(stack: &TestStack, base: &str, key: &str, limit: usize) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if base.contains('?') { '&' } else { '?' };
        loop {
            let mut path = format!("{base}{sep}limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = stack.api(&path).await.unwrap();
            let batch = page[key].as_array().unwrap();
            assert!(batch.len() <= limit);
            rows.extend(batch.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return rows,
            }
        }
    }

    let listed = all_pages(&stack, "/v1/cases", "cases", 5).await;
    let listed_ids: Vec<String> = listed
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = listed_ids.iter().collect();
    assert_eq!(listed_ids.len(), 23, "no case twice");
    assert_eq!(unique, expected, "every case once");
    let high = all_pages(&stack, "/v1/cases?severity=high", "cases", 3).await;
    assert_eq!(high.len(), 8);
    assert!(high.iter().all(|c| c["severity"] == "high"));
    let alerts_listed = all_pages(&stack, "/v1/alerts?source=pager", "alerts", 10).await;
    let alert_ids: BTreeSet<&str> = alerts_listed
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(alert_ids.len(), 23);
    assert_eq!(alerts_listed.len(), 23);

    // Filters on status, assignee, tag and time.
    let target = &listed_ids[4];
    let (status, _) = call(
        &stack,
        None,
        Method::PATCH,
        &format!("/v1/cases/{target}"),
        Some(json!({"version": 1, "status": "in_progress", "assignee": "bob", "tags": ["vip"]})),
    )
    .await;
    assert_eq!(status, 200);
    for filter in ["status=in_progress", "assignee=bob", "tag=vip"] {
        let page = stack.api(&format!("/v1/cases?{filter}")).await.unwrap();
        let found: Vec<&str> = page["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(found, [target.as_str()], "{filter}");
    }
    let future = "2999-01-01T00:00:00Z";
    let none = stack
        .api(&format!("/v1/cases?since={future}"))
        .await
        .unwrap();
    assert_eq!(none["cases"], json!([]));
    let all = stack
        .api(&format!("/v1/cases?until={future}&limit=500"))
        .await
        .unwrap();
    assert_eq!(all["cases"].as_array().unwrap().len(), 23);
    assert_eq!(all["next_cursor"], Value::Null);

    for bad in [
        "/v1/cases?cursor=garbage",
        "/v1/cases?limit=0",
        "/v1/cases?limit=501",
        "/v1/cases?status=open",
        "/v1/cases?since=yesterday",
        "/v1/cases?colour=red",
        "/v1/alerts?case_id=nope",
        "/v1/runs?status=done",
        "/v1/observables?type=car",
    ] {
        let (status, problem) = call(&stack, None, Method::GET, bad, None).await;
        assert_eq!(status, 400, "{bad}: {problem:#}");
    }
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_alerts_of_one_fingerprint_open_one_case_and_respect_the_group_size() {
    use tocsin_store::alerts::{AlertOutcome, NewAlert};
    use tocsin_store::grouping::PolicyChange;

    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let store = &stack.store;
    let tenant = tocsin_tests::TENANT;
    store
        .set_grouping_policy(
            tenant,
            &PolicyChange {
                fields: vec!["source".to_owned(), "raw.rule".to_owned()],
                window_seconds: 3600,
                max_group_size: 5,
                grouped_alerts_trigger: false,
                expected_version: None,
            },
            "test",
        )
        .await
        .unwrap();
    let alert = |n: usize| NewAlert {
        trace_id: None,
        id: uuid::Uuid::new_v4(),
        receipt_id: uuid::Uuid::new_v4(),
        tenant: tenant.to_owned(),
        source: "race".to_owned(),
        source_ref: format!("r-{n}"),
        title: format!("title {n}"),
        description: String::new(),
        severity: tocsin_proto::types::Severity::Low,
        occurred_at: None,
        received_at: time::OffsetDateTime::now_utc(),
        observables: json!([{"type": "ip", "value": format!("10.9.0.{n}")}]),
        tags: Vec::new(),
        raw: json!({"rule": "R1"}),
        mapping: None,
        match_report: None,
    };
    // Twelve alerts of one fingerprint recorded at once, straight through the store.
    let outcomes = join_spawned(
        (0..12)
            .map(|n| {
                let store = store.clone();
                let alert = alert(n);
                tokio::spawn(async move { store.record_alert(&alert, &[]).await })
            })
            .collect(),
    )
    .await;
    let mut sizes: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    let mut opened = 0;
    for outcome in outcomes {
        match outcome.unwrap().unwrap() {
            AlertOutcome::New {
                case_id, grouped, ..
            } => {
                *sizes.entry(case_id).or_default() += 1;
                opened += usize::from(!grouped);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut counts: Vec<usize> = sizes.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [2, 5, 5],
        "groups of at most five, never a duplicate case"
    );
    assert_eq!(opened, 3);
    for case_id in sizes.keys() {
        let case = stack.api(&format!("/v1/cases/{case_id}")).await.unwrap();
        assert_eq!(case["alert_count"].as_u64(), Some(sizes[case_id] as u64));
        let events = timeline(&stack, &case_id.to_string(), 500).await;
        let added = of_kind(&events, "alert_added");
        assert_eq!(added[0]["data"]["reason"], "new case");
        for event in &added[1..] {
            assert_eq!(event["data"]["reason"], "grouped");
            assert_eq!(
                event["data"]["matched"],
                json!({"source": "race", "raw.rule": "R1"})
            );
        }
    }
    stack.stop().await.unwrap();
}

/// Awaits spawned tasks (they run concurrently; this only collects them).
async fn join_spawned<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await);
    }
    out
}
