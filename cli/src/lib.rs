//! The `tocsin` command: `dev` and `demo` (the whole platform in one process), each service
//! on its own (`ingest`, `scheduler`, `worker`, `api`), `migrate`, `deploy`, admin verbs, and
//! the hidden `runner` the worker starts as its runner processes.
#![forbid(unsafe_code)]

pub mod client;
pub mod demo;

pub use tocsin_stack::{dev, stack};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tocsin_core::Shutdown;
use tocsin_core::config::{ConfigError, TelemetryConfig, Validate};
use tocsin_core::telemetry::TelemetryGuard;
use tocsin_store::Store;

use crate::dev::{Dev, DevOptions};
use crate::stack::StackConfig;

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// Tocsin: code-first security orchestration, automation and response.
#[derive(Debug, Parser)]
#[command(name = "tocsin", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform on this machine (private NATS and PostgreSQL unless
    /// TOCSIN_NATS_URL / TOCSIN_DATABASE_URL are set); writes <data-dir>/dev.env when ready.
    Dev(DevArgs),
    /// Start the dev stack, send the demo alerts, wait for their playbooks, print alerts,
    /// cases and runs, and stop.
    Demo(DemoArgs),
    /// Run the ingest service (HTTP alert intake).
    Ingest(ServiceArgs),
    /// Run the scheduler (alerts to cases and runs).
    Scheduler(ServiceArgs),
    /// Run a worker (executes playbooks in runner processes).
    Worker(ServiceArgs),
    /// Run the REST API.
    Api(ServiceArgs),
    /// Apply database migrations.
    Migrate(ConfigArgs),
    /// Deploy a playbook directory for a tenant (the same as `tocsin playbook deploy`).
    Deploy(DeployArgs),
    /// Deploy, list, test, enable and disable playbooks.
    #[command(subcommand)]
    Playbook(PlaybookCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API and ingest keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage tenant secrets for playbooks (`run.secrets["NAME"]`), encrypted at rest.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print a nats-server authorization block for SIEMs publishing to the INGEST stream:
    /// one user per tenant, allowed to publish to tocsin.ingest.<tenant>.> only.
    NatsConfig {
        /// Tenant to create a SIEM user for (repeat for several).
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// The user Tocsin's own services connect as (full access).
        #[arg(long, default_value = "tocsin")]
        service_user: String,
    },
    /// Approve a pending approval (client verb: uses TOCSIN_API_URL / TOCSIN_API_KEY).
    Approve(DecideArgs),
    /// Deny a pending approval.
    Deny(DecideArgs),
    /// List approvals.
    Approvals {
        #[command(flatten)]
        api: ApiArgs,
        /// pending | approved | denied | timed_out.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Start or inspect runs.
    #[command(subcommand)]
    Run(RunCommand),
    /// Run a benchmark scenario against a private stack: ingest, e2e, enrichment, steps,
    /// backlog, scale-out.
    Bench(BenchArgs),
    /// List, show, update and comment on cases (client verb).
    #[command(subcommand)]
    Case(CaseCommand),
    /// Show or change how related alerts are grouped into cases (client verb).
    #[command(subcommand)]
    Grouping(GroupingCommand),
    /// Runner process (started by the worker; speaks protobuf frames on stdin/stdout).
    #[command(hide = true)]
    Runner,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// TOML configuration file (layered over defaults, under TOCSIN_* environment variables).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServiceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the effective configuration (defaults, file, environment) as JSON, secrets
    /// redacted, and exit.
    #[arg(long = "print-config", alias = "dump-config")]
    dump_config: bool,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(Debug, Args)]
struct DevArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// State directory (private NATS and PostgreSQL data, bundles, dev.env).
    #[arg(long, default_value = ".tocsin")]
    data_dir: PathBuf,
    /// Playbook directory to deploy for the default tenant.
    #[arg(long, default_value = "./playbooks")]
    playbooks: PathBuf,
    /// Ingest listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    ingest_addr: SocketAddr,
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// State directory; emptied at start so every demo begins fresh.
    #[arg(long, default_value = ".tocsin/demo")]
    data_dir: PathBuf,
    /// Playbook directory to deploy.
    #[arg(long, default_value = "./playbooks")]
    playbooks: PathBuf,
    /// NDJSON file of alerts to send.
    #[arg(long, default_value = "deploy/demo/alerts.ndjson")]
    alerts: PathBuf,
    /// How long to wait for the runs, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct DeployArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Playbook directory.
    #[arg(default_value = "./playbooks")]
    dir: PathBuf,
    /// Tenant to deploy for.
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// ingest | e2e | enrichment | steps | backlog | scale-out.
    scenario: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Alerts per second to offer (default: as fast as the concurrency allows).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Alerts per request (NDJSON batches when above 1).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Runner processes per worker.
    #[arg(long, default_value_t = 2)]
    runners: usize,
    /// Concurrent runs per runner.
    #[arg(long, default_value_t = 32)]
    runs_per_runner: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Work queued up front: `backlog` queues this many runs (default 1000000; a tenth of
    /// it, 100 to 5000, first drains on the empty queue as the baseline); `scale-out` posts
    /// this many alerts for each worker count (default 2000).
    #[arg(long)]
    backlog: Option<usize>,
    /// Worker process counts `scale-out` measures, comma-separated: each count runs that many
    /// separate `tocsin worker` processes, with --runners runner processes each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Load pg_stat_statements into the private PostgreSQL and report the statements that
    /// took the database's time during the load (calls per measured run or alert, mean
    /// time, share).
    #[arg(long)]
    profile_sql: bool,
    /// Seconds of unmeasured load, at the same rate, before `e2e` and `enrichment` measure
    /// (database connections opened, runners warm); 0 skips it.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// How `ingest`, `e2e` and `enrichment` deliver alerts: `http` (POST /v1/alerts) or
    /// `nats` (JetStream publish to tocsin.ingest.<tenant>.alerts, NATS intake).
    #[arg(long, default_value = "http")]
    via: String,
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// API base URL (default: $TOCSIN_API_URL).
    #[arg(long)]
    api_url: Option<String>,
    /// API key (default: $TOCSIN_API_KEY).
    #[arg(long)]
    api_key: Option<String>,
}

#[derive(Debug, Args)]
struct DecideArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Approval id.
    id: String,
    /// Why.
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Start a playbook manually; prints the run id.
    Start {
        #[command(flatten)]
        api: ApiArgs,
        /// Playbook name.
        playbook: String,
        /// Run it on this alert (the run joins the alert's case).
        #[arg(long)]
        alert: Option<String>,
        /// JSON input (`run.input`).
        #[arg(long)]
        input: Option<String>,
    },
    /// Cancel a run (a running one is stopped by its worker).
    Cancel {
        #[command(flatten)]
        api: ApiArgs,
        /// Run id.
        id: String,
    },
    /// Run a failed, timed-out, needs-review, cancelled or dead-lettered run again;
    /// succeeded steps replay, the rest execute.
    Retry {
        #[command(flatten)]
        api: ApiArgs,
        /// Run id.
        id: String,
    },
    /// Mark an uncertain step of a needs-review run as done with a result, and resume it.
    Resolve {
        #[command(flatten)]
        api: ApiArgs,
        /// Run id.
        id: String,
        /// Step number (`seq`).
        seq: i32,
        /// The step's result as JSON.
        #[arg(long, default_value = "null")]
        result: String,
    },
    /// Show a run with its steps and logs.
    Show {
        #[command(flatten)]
        api: ApiArgs,
        /// Run id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// List cases, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// new | in_progress | resolved | closed.
        #[arg(long)]
        status: Option<String>,
        /// info | low | medium | high | critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only cases assigned to this.
        #[arg(long)]
        assignee: Option<String>,
        /// Only cases with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Page size (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show a case with its alerts, observables, runs and timeline.
    Show {
        #[command(flatten)]
        api: ApiArgs,
        /// Case id.
        id: String,
    },
    /// Change a case; each change lands on its timeline.
    Update {
        #[command(flatten)]
        api: ApiArgs,
        /// Case id.
        id: String,
        /// new | in_progress | resolved | closed.
        #[arg(long)]
        status: Option<String>,
        /// true_positive | false_positive | benign (required to resolve).
        #[arg(long)]
        determination: Option<String>,
        /// info | low | medium | high | critical.
        #[arg(long)]
        severity: Option<String>,
        /// Assign to this.
        #[arg(long, conflicts_with = "unassign")]
        assignee: Option<String>,
        /// Remove the assignee.
        #[arg(long)]
        unassign: bool,
        /// The complete tag list (repeat or comma-separate).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Option<Vec<String>>,
        /// Refuse the change if the case is no longer at this version (default: the version
        /// read just before).
        #[arg(long)]
        version: Option<i64>,
    },
    /// Comment on a case.
    Comment {
        #[command(flatten)]
        api: ApiArgs,
        /// Case id.
        id: String,
        /// The comment.
        text: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupingCommand {
    /// Show the grouping policy in force.
    Show {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change the grouping policy (stored as a new version; unspecified settings keep their
    /// current value).
    Set {
        #[command(flatten)]
        api: ApiArgs,
        /// Fingerprint fields, comma-separated: source, title, severity,
        /// observable:<type>[|<type>...], raw.<path>.
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        /// Window: alerts group into a case opened at most this long before (e.g. 1h, 30m).
        #[arg(long, value_parser = humantime::parse_duration)]
        window: Option<Duration>,
        /// A case holding this many alerts takes no more.
        #[arg(long)]
        max_group_size: Option<i32>,
        /// Whether alerts joining an existing case start playbook runs.
        #[arg(long)]
        grouped_alerts_trigger: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Set a secret; the value is read from standard input (never from the command line).
    Set {
        #[command(flatten)]
        config: ConfigArgs,
        /// Secret name.
        name: String,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List secret names.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a secret.
    Delete {
        #[command(flatten)]
        config: ConfigArgs,
        /// Secret name.
        name: String,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant (idempotent).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// Tenant id: 1-63 characters of a-z, 0-9 and '-'.
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PlaybookCommand {
    /// Validate a playbook directory in a runner, store it as a content-addressed bundle and
    /// make it live for the tenant on every node (needs the database: --config /
    /// TOCSIN_DATABASE_URL). Deploying an older directory is the rollback.
    Deploy(DeployArgs),
    /// Show the live bundle and its playbooks (client verb: TOCSIN_API_URL / TOCSIN_API_KEY).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a playbook directory's pytest suite with the SDK importable (`tocsin.testing`);
    /// exits with pytest's status.
    Test {
        /// Playbook directory (its tests are collected by pytest).
        #[arg(default_value = "./playbooks")]
        dir: PathBuf,
        /// SDK directory (the one holding `tocsin/`); default: DIR/sdk if present, else the
        /// installed `tocsin` package.
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Python interpreter.
        #[arg(long, env = "TOCSIN_PYTHON", default_value = "python3")]
        python: String,
        /// Extra pytest arguments (after `--`).
        #[arg(last = true)]
        pytest_args: Vec<String>,
    },
    /// Start matching a playbook again for new alerts and schedules, on every node at once.
    Enable {
        #[command(flatten)]
        api: ApiArgs,
        /// Playbook name.
        name: String,
    },
    /// Stop matching a playbook for new alerts and schedules (in-flight runs finish); the
    /// switch outlives later deploys.
    Disable {
        #[command(flatten)]
        api: ApiArgs,
        /// Playbook name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key; only the key is printed on stdout (once; it is stored as a hash).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// Tenant the key belongs to (omit for an operator key).
        #[arg(long)]
        tenant: Option<String>,
        /// admin (settings, keys, secrets, policies), analyst (cases, approvals, runs),
        /// viewer (read), ingest (send alerts only), or operator (admin in every tenant,
        /// naming the tenant of each call in X-Tocsin-Tenant).
        #[arg(long, value_parser = ["admin", "analyst", "viewer", "ingest", "operator"])]
        role: String,
        /// Label shown in listings.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Expiry (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List a tenant's keys (or the operator keys without --tenant); never the keys themselves.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key at once.
    Revoke {
        #[command(flatten)]
        config: ConfigArgs,
        /// Tenant of the key (omit for an operator key).
        #[arg(long)]
        tenant: Option<String>,
        /// Key id (from `tocsin key list`).
        id: String,
    },
}

/// Runs the parsed command line and returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    if let Command::Runner = cli.command {
        // No tokio runtime here: the runner's main thread belongs to the Python event loop.
        return tocsin_worker::runner_main();
    }
    if let Command::Playbook(PlaybookCommand::Test {
        dir,
        sdk,
        python,
        pytest_args,
    }) = &cli.command
    {
        return test_playbooks(dir, sdk.as_deref(), python, pytest_args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.downcast_ref::<ConfigError>().is_some() {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
            tracing::error!(error = format!("{error:#}"), "tocsin failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load<T>(args: &ConfigArgs) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    Ok(tocsin_core::config::load::<T>(args.config.as_deref())?)
}

/// Loads and inits telemetry for a service command, or handles --print/--check-config.
fn service_config<T>(
    args: &ServiceArgs,
    service: &'static str,
    telemetry: impl Fn(&T) -> &TelemetryConfig,
) -> anyhow::Result<Option<(T, TelemetryGuard)>>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let config: T = load(&args.config)?;
    if args.dump_config {
        println!("{}", tocsin_core::config::to_redacted_json(&config)?);
        return Ok(None);
    }
    if args.check_config {
        println!("configuration is valid");
        return Ok(None);
    }
    let guard = tocsin_core::telemetry::init(telemetry(&config), service);
    Ok(Some((config, guard)))
}

/// Runs `service` until SIGTERM/SIGINT, then flushes telemetry (the last drain step).
async fn serve<F, Fut, E>(guard: TelemetryGuard, service: F) -> anyhow::Result<()>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tocsin_core::shutdown::signal().await;
        trigger.cancel();
    });
    let result = service(shutdown).await.map_err(anyhow::Error::new);
    guard.shutdown().await;
    result
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Runner => Ok(()),
        Command::Approve(args) => {
            let client = client::ApiClient::new(args.api.api_url, args.api.api_key)?;
            client::decide(&client, &args.id, true, args.comment).await
        }
        Command::Deny(args) => {
            let client = client::ApiClient::new(args.api.api_url, args.api.api_key)?;
            client::decide(&client, &args.id, false, args.comment).await
        }
        Command::Approvals { api, status } => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::list_approvals(&client, &status).await
        }
        Command::Run(RunCommand::Start {
            api,
            playbook,
            alert,
            input,
        }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::start_run(&client, &playbook, alert, input).await
        }
        Command::Run(RunCommand::Cancel { api, id }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let answer = client
                .post(&format!("/v1/runs/{id}/cancel"), &serde_json::json!({}))
                .await?;
            println!("run {id}: {}", answer["status"].as_str().unwrap_or("?"));
            Ok(())
        }
        Command::Run(RunCommand::Retry { api, id }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client
                .post(&format!("/v1/runs/{id}/retry"), &serde_json::json!({}))
                .await?;
            println!("run {id} queued again");
            Ok(())
        }
        Command::Run(RunCommand::Resolve {
            api,
            id,
            seq,
            result,
        }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let result: serde_json::Value =
                serde_json::from_str(&result).context("--result must be JSON")?;
            client
                .post(
                    &format!("/v1/runs/{id}/steps/{seq}/resolve"),
                    &serde_json::json!({ "result": result }),
                )
                .await?;
            println!("step {seq} of run {id} resolved; the run resumes");
            Ok(())
        }
        Command::Case(CaseCommand::List {
            api,
            status,
            severity,
            assignee,
            tag,
            limit,
            cursor,
        }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let mut query = vec![("limit", limit.to_string())];
            for (name, value) in [
                ("status", status),
                ("severity", severity),
                ("assignee", assignee),
                ("tag", tag),
                ("cursor", cursor),
            ] {
                query.extend(value.map(|v| (name, v)));
            }
            client::list_cases(&client, &query).await
        }
        Command::Case(CaseCommand::Show { api, id }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::show_case(&client, &id).await
        }
        Command::Case(CaseCommand::Update {
            api,
            id,
            status,
            determination,
            severity,
            assignee,
            unassign,
            tags,
            version,
        }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let mut changes = serde_json::Map::new();
            for (name, value) in [
                ("status", status),
                ("determination", determination),
                ("severity", severity),
            ] {
                if let Some(v) = value {
                    changes.insert(name.to_owned(), serde_json::json!(v));
                }
            }
            if let Some(a) = assignee {
                changes.insert("assignee".to_owned(), serde_json::json!(a));
            }
            if unassign {
                changes.insert("assignee".to_owned(), serde_json::Value::Null);
            }
            if let Some(t) = tags {
                changes.insert("tags".to_owned(), serde_json::json!(t));
            }
            client::update_case(&client, &id, version, changes).await
        }
        Command::Case(CaseCommand::Comment { api, id, text }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let event = client
                .post(
                    &format!("/v1/cases/{id}/comments"),
                    &serde_json::json!({ "text": text }),
                )
                .await?;
            println!("comment {} added to case {id}", event["id"]);
            Ok(())
        }
        Command::Grouping(GroupingCommand::Show { api }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::show_grouping(&client).await
        }
        Command::Grouping(GroupingCommand::Set {
            api,
            fields,
            window,
            max_group_size,
            grouped_alerts_trigger,
        }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            let flags = client::PolicyFlags {
                fields,
                window,
                max_group_size,
                grouped_alerts_trigger,
            };
            client::set_grouping(&client, flags).await
        }
        Command::Run(RunCommand::Show { api, id }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::show_run(&client, &id).await
        }
        Command::Ingest(args) => {
            match service_config::<tocsin_ingest::Config>(&args, "ingest", |c| &c.telemetry)? {
                Some((config, guard)) => serve(guard, |s| tocsin_ingest::run(config, s)).await,
                None => Ok(()),
            }
        }
        Command::Scheduler(args) => {
            match service_config::<tocsin_scheduler::Config>(&args, "scheduler", |c| &c.telemetry)?
            {
                Some((config, guard)) => serve(guard, |s| tocsin_scheduler::run(config, s)).await,
                None => Ok(()),
            }
        }
        Command::Worker(args) => {
            match service_config::<tocsin_worker::Config>(&args, "worker", |c| &c.telemetry)? {
                Some((config, guard)) => serve(guard, |s| tocsin_worker::run(config, s)).await,
                None => Ok(()),
            }
        }
        Command::Api(args) => {
            match service_config::<tocsin_api::Config>(&args, "api", |c| &c.telemetry)? {
                Some((config, guard)) => serve(guard, |s| tocsin_api::run(config, s)).await,
                None => Ok(()),
            }
        }
        Command::Migrate(args) => {
            let config: StackConfig = load(&args)?;
            let _guard = tocsin_core::telemetry::init(&config.telemetry, "migrate");
            let store = connect(&config).await?;
            store.migrate().await.context("migration failed")?;
            println!("database is up to date");
            Ok(())
        }
        Command::NatsConfig {
            tenants,
            service_user,
        } => {
            print!("{}", nats_config(&tenants, &service_user)?);
            Ok(())
        }
        Command::Playbook(PlaybookCommand::List { api }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::list_playbooks(&client).await
        }
        Command::Playbook(PlaybookCommand::Enable { api, name }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::switch_playbook(&client, &name, true).await
        }
        Command::Playbook(PlaybookCommand::Disable { api, name }) => {
            let client = client::ApiClient::new(api.api_url, api.api_key)?;
            client::switch_playbook(&client, &name, false).await
        }
        Command::Playbook(PlaybookCommand::Test { .. }) => {
            anyhow::bail!("`playbook test` runs before the async runtime starts")
        }
        Command::Deploy(args) | Command::Playbook(PlaybookCommand::Deploy(args)) => {
            let config: StackConfig = load(&args.config)?;
            let _guard = tocsin_core::telemetry::init(&config.telemetry, "cli");
            let store = connect(&config).await?;
            let mut worker = config.worker.clone();
            if worker.sdk_path.is_none() && args.dir.join("sdk/tocsin").is_dir() {
                worker.sdk_path = Some(std::path::absolute(args.dir.join("sdk"))?);
            }
            let deployed =
                stack::deploy_playbooks(&store, &worker, &args.tenant, &args.dir, &cli_actor())
                    .await?;
            cli_audit(
                &store,
                Some(&args.tenant),
                "tocsin playbook deploy",
                &format!("bundle:{}", deployed.hash),
                Some(serde_json::json!({
                    "playbooks": deployed.playbooks.iter().map(|p| &p.name).collect::<Vec<_>>(),
                })),
            )
            .await?;
            println!(
                "deployed bundle {} ({} files) for tenant {}",
                deployed.hash, deployed.files, args.tenant
            );
            for p in &deployed.playbooks {
                println!(
                    "  {:<28} trigger={:<7} priority={:<6} {}:{}",
                    p.name, p.trigger, p.priority, p.file, p.line
                );
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { config, id, name }) => {
            if !tocsin_proto::types::is_valid_tenant_id(&id) {
                anyhow::bail!("invalid tenant id {id:?}: use 1-63 characters of a-z, 0-9 and '-'");
            }
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            let created = store
                .ensure_tenant(&id, name.as_deref().unwrap_or(&id))
                .await?;
            if created {
                cli_audit(
                    &store,
                    Some(&id),
                    "tocsin tenant create",
                    &format!("tenant:{id}"),
                    Some(serde_json::json!({"name": name.as_deref().unwrap_or(&id)})),
                )
                .await?;
            }
            println!(
                "tenant {id} {}",
                if created { "created" } else { "already exists" }
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::List { config }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            for t in store.list_tenants().await? {
                println!("{:<32} {:<32} {}", t.id, t.name, t.created_at);
            }
            Ok(())
        }
        Command::Key(KeyCommand::Create {
            config,
            tenant,
            role,
            name,
            expires,
        }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            let role: tocsin_store::keys::Role = role.parse().map_err(anyhow::Error::msg)?;
            let expires_at = expires
                .as_deref()
                .map(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--expires {t:?} is not RFC 3339"))
                })
                .transpose()?;
            let key = store
                .create_role_key(tenant.as_deref(), role, &name, expires_at, &cli_actor())
                .await
                .context("failed to create the key")?;
            cli_audit(
                &store,
                tenant.as_deref(),
                "tocsin key create",
                &format!("key:{}", key.id),
                Some(serde_json::json!({"role": role.as_str(), "name": name})),
            )
            .await?;
            println!("{}", key.secret);
            eprintln!(
                "key {} ({}) created; it is shown only this once",
                key.id,
                role.as_str()
            );
            Ok(())
        }
        Command::Key(KeyCommand::List { config, tenant }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            for k in store.list_keys(tenant.as_deref()).await? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked".to_owned(),
                    (None, Some(at)) => format!("expires {at}"),
                    (None, None) => "active".to_owned(),
                };
                println!(
                    "{}  {:<8} {:<24} {:<22} {}",
                    k.id, k.role, k.name, k.prefix, state
                );
            }
            Ok(())
        }
        Command::Key(KeyCommand::Revoke { config, tenant, id }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            let id = uuid::Uuid::parse_str(&id).context("key id must be a UUID")?;
            let key = store
                .revoke_key(tenant.as_deref(), id)
                .await
                .context("failed to revoke the key (is --tenant the key's tenant?)")?;
            cli_audit(
                &store,
                tenant.as_deref(),
                "tocsin key revoke",
                &format!("key:{id}"),
                None,
            )
            .await?;
            println!("key {} ({}) revoked", key.id, key.name);
            Ok(())
        }
        Command::Bench(args) => {
            let config: StackConfig = load(&args.config)?;
            let _guard = tocsin_core::telemetry::init(&config.telemetry, "bench");
            let scenario: tocsin_bench::Scenario =
                args.scenario.parse().map_err(anyhow::Error::msg)?;
            let options = tocsin_bench::Options {
                scenario,
                duration: Duration::from_secs(args.duration.max(1)),
                rate: args.rate.filter(|r| *r > 0.0),
                concurrency: args.concurrency.max(1),
                batch: args.batch.max(1),
                data_dir: None,
                runners: args.runners.max(1),
                runs_per_runner: args.runs_per_runner.max(1),
                backlog: args.backlog.unwrap_or(scenario.default_backlog()),
                workers: args.workers,
                profile_sql: args.profile_sql,
                warmup: Duration::from_secs(args.warmup),
                via: args.via.parse().map_err(anyhow::Error::msg)?,
            };
            let report = tocsin_bench::run(config, &options).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Secret(SecretCommand::Set {
            config,
            name,
            tenant,
        }) => {
            let config: StackConfig = load(&config)?;
            let key = master_key(&config)?;
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("failed to read the secret value from standard input")?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let store = connect(&config).await?;
            store.set_secret(&key, &tenant, &name, value).await?;
            // The name only: values never reach the audit log.
            cli_audit(
                &store,
                Some(&tenant),
                "tocsin secret set",
                &format!("secret:{name}"),
                None,
            )
            .await?;
            println!("secret {name} set for tenant {tenant}");
            Ok(())
        }
        Command::Secret(SecretCommand::List { config, tenant }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            for name in store.secret_names(&tenant).await? {
                println!("{name}");
            }
            Ok(())
        }
        Command::Secret(SecretCommand::Delete {
            config,
            name,
            tenant,
        }) => {
            let config: StackConfig = load(&config)?;
            let store = connect(&config).await?;
            let existed = store.delete_secret(&tenant, &name).await?;
            if existed {
                cli_audit(
                    &store,
                    Some(&tenant),
                    "tocsin secret delete",
                    &format!("secret:{name}"),
                    None,
                )
                .await?;
            }
            println!(
                "secret {name} {}",
                if existed { "deleted" } else { "did not exist" }
            );
            Ok(())
        }
        Command::Dev(args) => {
            let config: StackConfig = load(&args.config)?;
            let _guard = tocsin_core::telemetry::init(&config.telemetry, "dev");
            let options = DevOptions {
                data_dir: args.data_dir,
                playbooks: args.playbooks,
                ingest_addr: args.ingest_addr,
                api_addr: args.api_addr,
                worker: true,
                postgres_settings: Vec::new(),
            };
            run_dev(config, &options).await
        }
        Command::Demo(args) => {
            let config: StackConfig = load(&args.config)?;
            let _guard = tocsin_core::telemetry::init(&config.telemetry, "demo");
            if args.data_dir.exists() {
                std::fs::remove_dir_all(&args.data_dir)
                    .with_context(|| format!("failed to empty {}", args.data_dir.display()))?;
            }
            let options = DevOptions {
                data_dir: args.data_dir,
                playbooks: args.playbooks,
                ingest_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                worker: true,
                postgres_settings: Vec::new(),
            };
            demo::demo(
                config,
                &options,
                &args.alerts,
                Duration::from_secs(args.timeout),
            )
            .await
        }
    }
}

fn master_key(config: &StackConfig) -> anyhow::Result<tocsin_store::secrets::MasterKey> {
    let key = config.secrets.master_key.as_ref().context(
        "no master key: set TOCSIN_SECRETS__MASTER_KEY (source .tocsin/dev.env for tocsin dev)",
    )?;
    Ok(tocsin_store::secrets::MasterKey::from_base64(key.expose())?)
}

async fn connect(config: &StackConfig) -> anyhow::Result<Store> {
    Store::connect(&config.postgres).await.context(
        "failed to connect to postgres (set TOCSIN_DATABASE_URL, or source .tocsin/dev.env)",
    )
}

async fn run_dev(config: StackConfig, options: &DevOptions) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let mut dev = Dev::start(config, options, &shutdown).await?;
    println!("tocsin dev is running");
    println!(
        "  ingest  {}   (key in {}/dev.env)",
        dev.env.ingest_url,
        options.data_dir.display()
    );
    println!("  api     {}", dev.env.api_url);
    println!(
        "  source {} to use the stack from another shell; Ctrl-C stops everything",
        Path::new(&options.data_dir).join("dev.env").display()
    );
    let watcher = shutdown.child();
    let watch = tokio::spawn(dev::watch_playbooks(dev.watch.clone(), watcher.clone()));
    tokio::select! {
        () = tocsin_core::shutdown::signal() => {}
        (name, result) = dev.stack.first_exit() => {
            match result {
                Ok(()) => tracing::error!(service = name, "service stopped unexpectedly"),
                Err(error) => tracing::error!(service = name, error = format!("{error:#}"), "service failed"),
            }
        }
    }
    watcher.cancel();
    let _ = watch.await;
    dev.stop().await
}

/// `tocsin playbook test`: pytest over the directory, with the SDK and the directory itself
/// importable (so tests can `import` the playbook modules as the runner does).
fn test_playbooks(
    dir: &std::path::Path,
    sdk: Option<&std::path::Path>,
    python: &str,
    pytest_args: &[String],
) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("error: {} is not a directory", dir.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let sdk = sdk
        .map(std::path::Path::to_path_buf)
        .or_else(|| Some(dir.join("sdk")).filter(|p| p.join("tocsin").is_dir()));
    if let Some(sdk) = &sdk
        && !sdk.join("tocsin").is_dir()
    {
        eprintln!("error: --sdk {} holds no tocsin/ package", sdk.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut path: Vec<PathBuf> = sdk.into_iter().collect();
    path.push(dir.to_path_buf());
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        path.extend(std::env::split_paths(&existing));
    }
    let pythonpath = match std::env::join_paths(&path) {
        Ok(p) => p,
        Err(error) => {
            eprintln!("error: cannot build PYTHONPATH: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let status = std::process::Command::new(python)
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .arg(dir)
        .args(pytest_args)
        .env("PYTHONPATH", pythonpath)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status();
    match status {
        Ok(status) => match status.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => ExitCode::FAILURE,
        },
        Err(error) => {
            eprintln!("error: cannot run {python} -m pytest: {error} (is pytest installed?)");
            ExitCode::FAILURE
        }
    }
}

/// Who runs an admin verb, as the audit log names it.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Writes the audit entry of an admin verb that changed something.
async fn cli_audit(
    store: &tocsin_store::Store,
    tenant: Option<&str>,
    action: &str,
    target: &str,
    after: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    store
        .audit(&tocsin_store::audit::AuditEntry {
            tenant,
            actor: &cli_actor(),
            action,
            target,
            before: None,
            after: after.as_ref(),
        })
        .await
        .context("the change was made but its audit entry could not be written")?;
    Ok(())
}

/// The nats-server `authorization` block of `tocsin nats-config`: Tocsin's services get
/// everything; each tenant's SIEM user may publish to its own ingest subjects (and receive
/// JetStream acks on its inbox), nothing else. Passwords are random (128 bits), shown once.
fn nats_config(tenants: &[String], service_user: &str) -> anyhow::Result<String> {
    let password = || uuid::Uuid::new_v4().simple().to_string();
    let mut out = String::from(
        "# Generated by `tocsin nats-config`: merge into nats-server.conf. Passwords are shown\n\
         # only here; hash them with `nats server passwd` if you keep the file.\n\
         authorization {\n  users = [\n",
    );
    out.push_str(&format!(
        "    # Tocsin's services: TOCSIN_NATS__URL=nats://{service_user}:<password>@host:4222\n    \
         {{ user: {service_user:?}, password: {:?} }}\n",
        password()
    ));
    for tenant in tenants {
        if !tocsin_proto::types::is_valid_tenant_id(tenant) {
            anyhow::bail!("invalid tenant id {tenant:?}: use 1-63 characters of a-z, 0-9 and '-'");
        }
        let subject = tocsin_proto::subjects::ingest_subject(tenant, ">");
        out.push_str(&format!(
            "    # SIEM of tenant {tenant}: publish to {}\n    \
             {{ user: \"siem-{tenant}\", password: {:?},\n      \
             permissions: {{ publish: {{ allow: [{subject:?}] }}, subscribe: {{ allow: [\"_INBOX.>\"] }} }} }}\n",
            tocsin_proto::subjects::ingest_subject(tenant, "<source>"),
            password()
        ));
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}
