//! A private PostgreSQL cluster (initdb under our data dir), listening on loopback TCP only,
//! with a generated password for the `tocsin` superuser.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::DevStackError;
use crate::process::{Supervised, free_port};

const SUPERUSER: &str = "tocsin";

/// A running private PostgreSQL cluster.
#[derive(Debug)]
pub struct PgCluster {
    process: Supervised,
    data_dir: PathBuf,
    port: u16,
    password: String,
    /// How it was started, for [`PgCluster::restart`].
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    owner: Option<(u32, u32)>,
}

impl PgCluster {
    /// Starts the cluster in `dir` (running initdb first if it is empty) on `port` or a free
    /// one. `durable = false` turns fsync off (tests, benchmarks of the code rather than the
    /// disk). When running as root, the cluster runs as the `postgres` system user.
    pub async fn start(
        dir: &Path,
        port: Option<u16>,
        durable: bool,
    ) -> Result<Self, DevStackError> {
        Self::start_with_settings(dir, port, durable, &[]).await
    }

    /// [`PgCluster::start`] with further server settings (`name=value`, each passed as
    /// `-c name=value`), e.g. `shared_preload_libraries=pg_stat_statements` for profiling.
    pub async fn start_with_settings(
        dir: &Path,
        port: Option<u16>,
        durable: bool,
        settings: &[String],
    ) -> Result<Self, DevStackError> {
        if let Some(bad) = settings.iter().find(|s| !s.contains('=')) {
            return Err(DevStackError::Command {
                command: "postgres".to_owned(),
                output: format!("server setting {bad:?} is not name=value"),
            });
        }
        let bindir = find_pg_bindir()?;
        let owner = postgres_owner()?;
        std::fs::create_dir_all(dir)
            .map_err(DevStackError::io(format!("create {}", dir.display())))?;
        let data_dir = dir.join("data");
        let password_file = dir.join("password");
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&bindir, dir, &data_dir, &password_file, owner).await?;
        }
        let password = std::fs::read_to_string(&password_file)
            .map_err(DevStackError::io(format!(
                "read {}",
                password_file.display()
            )))?
            .trim()
            .to_owned();
        remove_stale_pid_file(&data_dir);
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut args = vec![
            "-D".to_owned(),
            data_dir.display().to_string(),
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            "listen_addresses=127.0.0.1".to_owned(),
            "-c".to_owned(),
            "unix_socket_directories=".to_owned(),
            "-c".to_owned(),
            "max_connections=200".to_owned(),
        ];
        if !durable {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                args.push("-c".to_owned());
                args.push(setting.to_owned());
            }
        }
        for setting in settings {
            args.push("-c".to_owned());
            args.push(setting.clone());
        }
        let log = dir.join("postgres.log");
        if let Some((uid, gid)) = owner {
            // The supervisor runs as postgres and must be able to append to the log.
            touch_owned(&log, uid, gid)?;
        }
        let program = bindir.join("postgres");
        let process = Supervised::spawn(&program, &args, "INT", &log, owner, None).await?;
        let mut cluster = Self {
            process,
            data_dir,
            port,
            password,
            program,
            args,
            log,
            owner,
        };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Stops it with an immediate shutdown (SIGQUIT: no checkpoint, crash recovery at the
    /// next start), as an outage would; every connection is cut.
    pub async fn stop_immediate(&mut self) {
        self.process
            .signal_and_wait("QUIT", Duration::from_secs(20))
            .await;
    }

    /// Starts it again on the same port and data (after [`PgCluster::stop`] or
    /// [`PgCluster::stop_immediate`]).
    pub async fn restart(&mut self) -> Result<(), DevStackError> {
        remove_stale_pid_file(&self.data_dir);
        self.process = Supervised::spawn(
            &self.program,
            &self.args,
            "INT",
            &self.log,
            self.owner,
            None,
        )
        .await?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), DevStackError> {
        let log = self.log.clone();
        let deadline = Duration::from_secs(30);
        let start = tokio::time::Instant::now();
        while start.elapsed() < deadline {
            if let Ok(conn) = self.options("postgres").connect().await {
                let _ = conn.close().await;
                return Ok(());
            }
            if !self.process.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DevStackError::NotReady {
            server: "postgres",
            secs: deadline.as_secs(),
            log: log.display().to_string(),
        })
    }

    fn options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database(database)
    }

    /// Connection URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `database` unless it exists. `database` must be a plain identifier.
    pub async fn create_database(&self, database: &str) -> Result<(), DevStackError> {
        if database.is_empty()
            || !database
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(DevStackError::Command {
                command: "create database".to_owned(),
                output: format!("invalid database name {database:?}"),
            });
        }
        let mut conn = self.options("postgres").connect().await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            // Identifiers cannot be bound; the name was checked to be [a-z0-9_]+ above.
            sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Stops it with a fast shutdown.
    pub async fn stop(&mut self) {
        self.process.stop(Duration::from_secs(20)).await;
    }

    /// Data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

async fn init_cluster(
    bindir: &Path,
    dir: &Path,
    data_dir: &Path,
    password_file: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), DevStackError> {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    std::fs::write(password_file, &password).map_err(DevStackError::io(format!(
        "write {}",
        password_file.display()
    )))?;
    std::fs::set_permissions(password_file, std::fs::Permissions::from_mode(0o600))
        .map_err(DevStackError::io("restrict password file"))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(DevStackError::io(format!("chown {}", dir.display())))?;
        std::os::unix::fs::chown(password_file, Some(uid), Some(gid))
            .map_err(DevStackError::io("chown password file"))?;
    }
    let mut cmd = tokio::process::Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()));
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .output()
        .await
        .map_err(DevStackError::io("run initdb"))?;
    if !out.status.success() {
        return Err(DevStackError::Command {
            command: "initdb".to_owned(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Removes `postmaster.pid` left by a crashed postgres: one whose pid is not a running
/// postgres. (A live one is left alone and postgres refuses to start, as it should.)
fn remove_stale_pid_file(data_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let pid = text.lines().next().unwrap_or_default().trim();
    let alive = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
        .unwrap_or(false);
    if !alive {
        tracing::info!(path = %pid_file.display(), "removing stale postgres pid file");
        let _ = std::fs::remove_file(&pid_file);
    }
}

fn touch_owned(path: &Path, uid: u32, gid: u32) -> Result<(), DevStackError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(DevStackError::io(format!("create {}", path.display())))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(DevStackError::io(format!("chown {}", path.display())))
}

/// PostgreSQL refuses to run as root; when we are root, run it as the `postgres` user.
fn postgres_owner() -> Result<Option<(u32, u32)>, DevStackError> {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map_err(DevStackError::io("run id -u"))?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        return Ok(None);
    }
    let field = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (field("-u"), field("-g")) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(DevStackError::NotFound {
            program: "user postgres",
            hint: "PostgreSQL cannot run as root; install the postgresql package (it creates the postgres user) or run as another user",
        }),
    }
}

/// Finds PostgreSQL's server binaries: `TOCSIN_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else the directory of `initdb` on `PATH`.
pub fn find_pg_bindir() -> Result<PathBuf, DevStackError> {
    if let Some(dir) = std::env::var_os("TOCSIN_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        })
        .ok_or(DevStackError::NotFound {
            program: "postgres",
            hint: "run deploy/bootstrap.sh (apt-get install postgresql) or set TOCSIN_PG_BINDIR",
        })
}
