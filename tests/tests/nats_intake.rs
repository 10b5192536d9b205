//! NATS intake (issue 6): a SIEM publishes raw events to `tocsin.ingest.<tenant>.<source>`;
//! ingest normalizes them like the webhook endpoint, publishes the alerts, and acks. Events
//! that cannot become alerts are kept as rejected events with the reason (visible to their
//! tenant only) and acked — nothing loops through redeliveries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_proto::subjects;
use tocsin_tests::{TENANT, TestStack};

const EVE: &str = r#"{"timestamp":"2017-01-30T16:12:36.066011+0100","flow_id":1501577875823823,"event_type":"alert","src_ip":"172.17.0.2","src_port":41402,"dest_ip":"54.230.202.37","dest_port":80,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2013504,"rev":5,"signature":"ET POLICY GNU/Linux APT User-Agent Outbound likely related to package management","category":"Not Suspicious Traffic","severity":3}}"#;

async fn wait_until<F: Fn(&Value) -> bool>(stack: &TestStack, path: &str, done: F) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = stack.api(path).await
            && done(&v)
        {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out on {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_published_to_the_ingest_stream_become_alerts_or_rejected_events() {
    let stack = TestStack::start(tocsin_tests::options!()).await.unwrap();
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let publish = |subject: String, body: String| {
        let js = js.clone();
        async move {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };

    publish(
        subjects::ingest_subject(TENANT, "suricata-eve"),
        EVE.to_owned(),
    )
    .await;
    let generic = format!(
        "{}\n{}\n",
        json!({"title": "nats one", "severity": "high", "source": "siem"}),
        json!({"title": "nats two", "severity": "low", "source": "siem"})
    );
    publish(subjects::ingest_subject(TENANT, "alerts"), generic).await;
    publish(
        subjects::ingest_subject(TENANT, "suricata-eve"),
        "not json {".to_owned(),
    )
    .await;
    publish(
        subjects::ingest_subject(TENANT, "no-such-format"),
        "{}".to_owned(),
    )
    .await;
    publish(
        subjects::ingest_subject("ghost", "alerts"),
        json!({"title": "t", "severity": "low"}).to_string(),
    )
    .await;

    let alerts = wait_until(&stack, "/v1/alerts?limit=50", |v| {
        v["alerts"].as_array().is_some_and(|a| a.len() >= 3)
    })
    .await;
    let titles: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["title"].as_str())
        .collect();
    assert!(
        titles.contains(&"nats one") && titles.contains(&"nats two"),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t.contains("APT User-Agent")),
        "the EVE event is normalized like the webhook: {titles:?}"
    );
    let eve = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"].as_str().is_some_and(|t| t.contains("APT")))
        .unwrap();
    assert_eq!(eve["source"], "suricata-eve");

    let rejected = wait_until(&stack, "/v1/rejected-events", |v| {
        v["items"].as_array().is_some_and(|a| a.len() >= 2)
    })
    .await;
    let items = rejected["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        2,
        "the ghost tenant's event is not this tenant's: {rejected:#}"
    );
    let by_source = |s: &str| items.iter().find(|e| e["source"] == s).unwrap();
    let malformed = by_source("suricata-eve");
    assert_eq!(malformed["payload"], "not json {");
    assert!(!malformed["reason"].as_str().unwrap().is_empty());
    assert!(
        by_source("no-such-format")["reason"]
            .as_str()
            .unwrap()
            .contains("no-such-format"),
        "{rejected:#}"
    );

    // Everything was settled once: nothing pending, nothing waiting for an ack.
    let start = Instant::now();
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream(subjects::INGEST_STREAM)
            .await
            .unwrap()
            .get_consumer(subjects::INGEST_CONSUMER)
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            assert_eq!(info.delivered.stream_sequence, 5);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await.unwrap();
}

/// `tocsin nats-config` produces a block nats-server accepts, in which a tenant's SIEM user
/// can publish to its own ingest subjects (with JetStream acks) and to nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_config_lets_a_siem_publish_only_to_its_own_tenants_subjects() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin-test-service"))
        .args(["nats-config", "--tenant", "acme", "--tenant", "globex"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let block = String::from_utf8(output.stdout).unwrap();
    let password_of = |user: &str| -> String {
        let line = block
            .lines()
            .find(|l| l.contains(&format!("user: \"{user}\"")))
            .unwrap();
        line.split("password: \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let port = tocsin_devstack::free_port().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, &block).unwrap();
    let mut server = tokio::process::Command::new(tocsin_devstack::find_nats_server(None).unwrap())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("js"))
        .arg("-c")
        .arg(&conf)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let connect = |user: &str, password: String| {
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password)
            .connect(addr.clone())
    };
    // Tocsin's own connect takes the credentials from the URL, as configured in production.
    let service_config = tocsin_core::config::NatsConfig {
        url: format!("nats://tocsin:{}@127.0.0.1:{port}", password_of("tocsin")),
        ..Default::default()
    };
    let start = Instant::now();
    let service = loop {
        match tocsin_core::nats::connect(&service_config, "test").await {
            Ok(c) => break c,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let service_js = async_nats::jetstream::new(service);
    tocsin_core::nats::ensure_streams(&service_js, &tocsin_core::config::NatsConfig::default())
        .await
        .unwrap();

    let mut siem_js = async_nats::jetstream::new(
        connect("siem-acme", password_of("siem-acme"))
            .await
            .unwrap(),
    );
    siem_js.set_timeout(Duration::from_secs(2));
    siem_js
        .publish(subjects::ingest_subject("acme", "alerts"), "{}".into())
        .await
        .unwrap()
        .await
        .expect("acme's SIEM publishes to acme's subjects");
    let refused = async {
        siem_js
            .publish(subjects::ingest_subject("globex", "alerts"), "{}".into())
            .await?
            .await
    }
    .await;
    assert!(refused.is_err(), "acme's SIEM must not publish as globex");
    assert!(connect("siem-acme", "wrong".to_owned()).await.is_err());
    let mut stream = service_js
        .get_stream(subjects::INGEST_STREAM)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    server.kill().await.unwrap();
}
