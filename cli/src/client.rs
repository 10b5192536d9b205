//! Client verbs: talk to a running Tocsin over its REST API, with `TOCSIN_API_URL` and
//! `TOCSIN_API_KEY` (what `source .tocsin/dev.env` sets) or `--api-url` / `--api-key`.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the API is and the key to use.
#[derive(Debug, Clone)]
pub struct ApiClient {
    url: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// From explicit values or the environment.
    pub fn new(url: Option<String>, key: Option<String>) -> anyhow::Result<Self> {
        let url = url
            .or_else(|| std::env::var("TOCSIN_API_URL").ok())
            .context("no API URL: pass --api-url or set TOCSIN_API_URL (source .tocsin/dev.env)")?;
        let key = key
            .or_else(|| std::env::var("TOCSIN_API_KEY").ok())
            .context("no API key: pass --api-key or set TOCSIN_API_KEY (source .tocsin/dev.env)")?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            http,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("failed to reach the API at {}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            bail!("API answered {status}: {detail}");
        }
        Ok(body)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    /// GET `path` with query parameters (URL-encoded).
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.url)).query(query))
            .await
    }

    /// PATCH `body` to `path`.
    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(format!("{}{path}", self.url)).json(body))
            .await
    }

    /// PUT `body` to `path`.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.url)).json(body))
            .await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.url)).json(body))
            .await
    }
}

/// `tocsin approve|deny ID`.
pub async fn decide(
    client: &ApiClient,
    id: &str,
    approve: bool,
    comment: Option<String>,
) -> anyhow::Result<()> {
    let decision = if approve { "approve" } else { "deny" };
    let view = client
        .post(
            &format!("/v1/approvals/{id}"),
            &json!({ "decision": decision, "comment": comment }),
        )
        .await?;
    println!(
        "approval {} {} (run {})",
        view["id"].as_str().unwrap_or(id),
        view["status"].as_str().unwrap_or("?"),
        view["run_id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `tocsin approvals`.
pub async fn list_approvals(client: &ApiClient, status: &str) -> anyhow::Result<()> {
    let list = client
        .get(&format!("/v1/approvals?status={status}"))
        .await?;
    let approvals = list["approvals"].as_array().cloned().unwrap_or_default();
    if approvals.is_empty() {
        println!("no {status} approvals");
    }
    for a in approvals {
        println!(
            "{}  {:<9} expires {}  run {}  {}",
            a["id"].as_str().unwrap_or("?"),
            a["status"].as_str().unwrap_or("?"),
            a["expires_at"].as_str().unwrap_or("?"),
            a["run_id"].as_str().unwrap_or("?"),
            a["title"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `tocsin run start PLAYBOOK`.
pub async fn start_run(
    client: &ApiClient,
    playbook: &str,
    alert: Option<String>,
    input: Option<String>,
) -> anyhow::Result<()> {
    let input: Option<Value> = input
        .map(|text| serde_json::from_str(&text).context("--input must be JSON"))
        .transpose()?;
    let answer = client
        .post(
            "/v1/runs",
            &json!({ "playbook": playbook, "alert_id": alert, "input": input }),
        )
        .await?;
    println!("{}", answer["run_id"].as_str().unwrap_or("?"));
    Ok(())
}

/// `tocsin run show ID`.
pub async fn show_run(client: &ApiClient, id: &str) -> anyhow::Result<()> {
    let run = client.get(&format!("/v1/runs/{id}")).await?;
    println!("{}", serde_json::to_string_pretty(&run)?);
    Ok(())
}

/// Changes to the grouping policy asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct PolicyFlags {
    /// Fingerprint fields.
    pub fields: Option<Vec<String>>,
    /// Window.
    pub window: Option<std::time::Duration>,
    /// Maximum alerts per case.
    pub max_group_size: Option<i32>,
    /// Whether grouped alerts start runs.
    pub grouped_alerts_trigger: Option<bool>,
}

fn print_policy(policy: &Value) {
    let fields: Vec<&str> = policy["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let window = policy["window_seconds"].as_u64().unwrap_or(0);
    println!("version                 {}", policy["version"]);
    println!("fields                  {}", fields.join(", "));
    println!(
        "window                  {}",
        humantime::format_duration(std::time::Duration::from_secs(window))
    );
    println!("max group size          {}", policy["max_group_size"]);
    println!(
        "grouped alerts trigger  {}",
        policy["grouped_alerts_trigger"]
    );
    if let Some(by) = policy["created_by"].as_str() {
        println!(
            "set by                  {by} at {}",
            policy["created_at"].as_str().unwrap_or("?")
        );
    } else {
        println!("(built-in defaults)");
    }
}

/// `tocsin grouping show`.
pub async fn show_grouping(client: &ApiClient) -> anyhow::Result<()> {
    print_policy(&client.get("/v1/grouping-policy").await?);
    Ok(())
}

/// `tocsin grouping set`: the current policy with the given changes, as a new version
/// (refused if someone else changed it in between).
pub async fn set_grouping(client: &ApiClient, flags: PolicyFlags) -> anyhow::Result<()> {
    let current = client.get("/v1/grouping-policy").await?;
    let window = match flags.window {
        Some(w) => {
            let secs = w.as_secs();
            if secs == 0 || w.subsec_nanos() != 0 {
                bail!("--window must be a whole number of seconds, at least 1s");
            }
            json!(secs)
        }
        None => current["window_seconds"].clone(),
    };
    let body = json!({
        "version": current["version"],
        "fields": flags.fields.map_or_else(|| current["fields"].clone(), |f| json!(f)),
        "window_seconds": window,
        "max_group_size": flags
            .max_group_size
            .map_or_else(|| current["max_group_size"].clone(), |n| json!(n)),
        "grouped_alerts_trigger": flags
            .grouped_alerts_trigger
            .map_or_else(|| current["grouped_alerts_trigger"].clone(), |b| json!(b)),
    });
    let policy = client.put("/v1/grouping-policy", &body).await?;
    print_policy(&policy);
    Ok(())
}

/// `tocsin case list`: one line per case, newest first.
pub async fn list_cases(client: &ApiClient, query: &[(&str, String)]) -> anyhow::Result<()> {
    let page = client.get_query("/v1/cases", query).await?;
    let cases = page["cases"].as_array().cloned().unwrap_or_default();
    if cases.is_empty() {
        println!("no cases");
        return Ok(());
    }
    println!(
        "{:<36}  {:<11}  {:<8}  {:>6}  {:<12}  TITLE",
        "CASE", "STATUS", "SEVERITY", "ALERTS", "ASSIGNEE"
    );
    for case in &cases {
        println!(
            "{:<36}  {:<11}  {:<8}  {:>6}  {:<12}  {}",
            case["id"].as_str().unwrap_or("?"),
            case["status"].as_str().unwrap_or("?"),
            case["severity"].as_str().unwrap_or("?"),
            case["alert_count"].as_i64().unwrap_or(0),
            case["assignee"].as_str().unwrap_or("-"),
            case["title"].as_str().unwrap_or("")
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("more: --cursor {cursor}");
    }
    Ok(())
}

/// `tocsin case show ID`: the case, then its timeline.
pub async fn show_case(client: &ApiClient, id: &str) -> anyhow::Result<()> {
    let case = client.get(&format!("/v1/cases/{id}")).await?;
    println!("{}", serde_json::to_string_pretty(&case)?);
    let mut cursor: Option<String> = None;
    println!("timeline:");
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page = client
            .get_query(&format!("/v1/cases/{id}/timeline"), &query)
            .await?;
        for event in page["events"].as_array().into_iter().flatten() {
            println!(
                "  {}  {:<20}  {:<40}  {}",
                event["created_at"].as_str().unwrap_or("?"),
                event["kind"].as_str().unwrap_or("?"),
                event["actor"].as_str().unwrap_or("?"),
                event["data"]
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(()),
        }
    }
}

/// `tocsin case update ID`: applies `changes` (a PATCH body without `version`) on top of
/// the version read now, or `version` when given.
pub async fn update_case(
    client: &ApiClient,
    id: &str,
    version: Option<i64>,
    mut changes: serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        bail!(
            "nothing to change: pass --status, --determination, --severity, --assignee, --unassign or --tag"
        );
    }
    let version = match version {
        Some(v) => v,
        None => client.get(&format!("/v1/cases/{id}")).await?["version"]
            .as_i64()
            .context("the case has no version")?,
    };
    changes.insert("version".to_owned(), json!(version));
    let case = client
        .patch(&format!("/v1/cases/{id}"), &Value::Object(changes))
        .await?;
    println!(
        "case {id}: {} {} (version {})",
        case["status"].as_str().unwrap_or("?"),
        case["severity"].as_str().unwrap_or("?"),
        case["version"]
    );
    Ok(())
}

/// One path segment, percent-encoded (playbook names are user text).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `tocsin playbook list`.
pub async fn list_playbooks(client: &ApiClient) -> anyhow::Result<()> {
    let answer = client.get("/v1/playbooks").await?;
    let deployment = &answer["deployment"];
    if deployment.is_null() {
        println!("no bundle deployed yet (tocsin playbook deploy DIR)");
        return Ok(());
    }
    println!(
        "bundle {} deployed {} by {}",
        deployment["bundle_hash"].as_str().unwrap_or("?"),
        deployment["deployed_at"].as_str().unwrap_or("?"),
        deployment["deployed_by"].as_str().unwrap_or("?"),
    );
    println!(
        "{:<28} {:<8} {:<22} {:<7} LOCATION",
        "NAME", "STATE", "TRIGGER", "PRIO"
    );
    for p in answer["items"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<8} {:<22} {:<7} {}:{}",
            p["name"].as_str().unwrap_or("?"),
            if p["enabled"].as_bool() == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
            p["trigger"].as_str().unwrap_or("?"),
            p["priority"].as_str().unwrap_or("?"),
            p["file"].as_str().unwrap_or("?"),
            p["line"],
        );
    }
    Ok(())
}

/// `tocsin playbook enable|disable NAME`.
pub async fn switch_playbook(client: &ApiClient, name: &str, enabled: bool) -> anyhow::Result<()> {
    let verb = if enabled { "enable" } else { "disable" };
    client
        .post(
            &format!("/v1/playbooks/{}/{verb}", segment(name)),
            &json!({}),
        )
        .await?;
    println!("playbook {name} {verb}d for new alerts on every node");
    Ok(())
}
