//! Supervised child processes.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::DevStackError;

/// Supervisor script: starts the server, prints its pid, and stops it with `$1` (a signal
/// name) once stdin reaches EOF (we closed it, or we died). Background jobs of a
/// non-interactive shell get /dev/null as stdin, so the watcher reads our pipe through fd 3.
const SUPERVISOR: &str = r#"sig="$1"; shift
exec 3<&0
"$@" </dev/null >&2 3<&- &
child=$!
echo "$child"
( while read -r _ <&3; do :; done; kill -s "$sig" "$child" 2>/dev/null ) &
exec 3<&-
wait "$child"
"#;

/// A server process under the supervisor.
#[derive(Debug)]
pub(crate) struct Supervised {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Pid of the server itself (not the supervisor).
    pub(crate) pid: u32,
}

impl Supervised {
    /// Starts `program args...`, with its stdout and stderr appended to `log` (our pipe from
    /// the supervisor carries only the pid, so nothing of the server depends on us reading).
    /// With `env`, the program gets our environment less every `TOCSIN_*` variable, plus
    /// `env`; without, our environment as it is.
    pub(crate) async fn spawn(
        program: &Path,
        args: &[String],
        stop_signal: &str,
        log: &Path,
        uid_gid: Option<(u32, u32)>,
        env: Option<&[(String, String)]>,
    ) -> Result<Self, DevStackError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(DevStackError::io(format!("open {}", log.display())))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg("tocsin-supervisor")
            .arg(stop_signal)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Own process group: a Ctrl-C in the terminal reaches us, and we stop the
            // servers in order, instead of the servers dying under in-flight work.
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = uid_gid {
            cmd.uid(uid).gid(gid);
        }
        if let Some(env) = env {
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("TOCSIN_") {
                    cmd.env_remove(name);
                }
            }
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let mut child = cmd
            .spawn()
            .map_err(DevStackError::io(format!("start {}", program.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| DevStackError::Io {
            action: "read supervisor output".to_owned(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let mut lines = BufReader::new(stdout).lines();
        let pid_line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| DevStackError::Io {
                action: "read server pid".to_owned(),
                source: std::io::Error::other("timed out"),
            })?
            .map_err(DevStackError::io("read server pid"))?
            .unwrap_or_default();
        let pid = pid_line.trim().parse().map_err(|_| DevStackError::Io {
            action: "read server pid".to_owned(),
            source: std::io::Error::other(format!("unexpected supervisor output {pid_line:?}")),
        })?;
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            pid,
        })
    }

    /// Whether the supervisor (and so the server) is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server with its stop signal and waits up to `grace`; kills it after that.
    /// The server's exit status when it exited within `grace` (the supervisor exits with
    /// it), `None` when it had to be killed (or could not be waited for).
    pub(crate) async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.kill().await;
                None
            }
        }
    }

    /// Sends `signal` (a name such as `QUIT`) to the server and waits up to `grace` for it
    /// to exit; kills it after that.
    pub(crate) async fn signal_and_wait(&mut self, signal: &str, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
        drop(self.stdin.take());
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub(crate) async fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .await;
        drop(self.stdin.take());
        let _ = self.child.wait().await;
    }
}

/// A Tocsin service (such as `tocsin worker`) run as a separate OS process under the same
/// supervisor as the servers: SIGTERM reaches it when we stop it, or when we die.
#[derive(Debug)]
pub struct ServiceProcess {
    process: Supervised,
}

impl ServiceProcess {
    /// Starts `program args...` with stdout and stderr appended to `log`. Its environment is
    /// ours less every `TOCSIN_*` variable, plus `env`: what it is configured with is only
    /// what it is given (`--config` in `args`, and `env`).
    pub async fn start(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self, DevStackError> {
        let process = Supervised::spawn(program, args, "TERM", log, None, Some(env)).await?;
        Ok(Self { process })
    }

    /// Pid of the service itself (not the supervisor).
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGTERM, then waits up to `grace` for it to drain and exit; SIGKILL after that. Its
    /// exit status when it exited by itself within `grace`, `None` when it was killed.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.stop(grace).await
    }
}

/// Every process below `pid` (children found through `/proc/<pid>/task/*/children`), such
/// as a worker's runner processes.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if !found.contains(&child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// A free TCP port on 127.0.0.1 (free when asked; a race with other processes is possible,
/// so callers retry on bind failures).
pub fn free_port() -> Result<u16, DevStackError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(DevStackError::io("find a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(DevStackError::io("find a free port"))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}
