"""deploy/docker-compose.yml: services, health checks, start order, secrets, per-service
configuration; and the health-check script the image ships (deploy/compose/healthcheck.py)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from deploy_support import (
    COMPOSE_FILE,
    DRAIN_STEPS,
    DUMMY_SECRETS,
    env_section,
    parse_duration,
    sections_for,
    tocsin_binary,
)

DEPLOY = COMPOSE_FILE.parent
HEALTHCHECK = DEPLOY / "compose" / "healthcheck.py"
SECRETS_EXAMPLE = DEPLOY / "compose" / "secrets.env.example"

INFRA = {"postgres", "nats"}
ONE_SHOTS = {"migrate", "tenant", "deploy"}
SERVICES = {"ingest", "scheduler", "worker", "api"}
TOOLS = {"admin"}
SECRETS = {"POSTGRES_PASSWORD": "pgpass", "NATS_PASSWORD": "natspass", "TOCSIN_MASTER_KEY": DUMMY_SECRETS["TOCSIN_SECRETS__MASTER_KEY"]}

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op == ":?" and not current or op == "?" and current is None:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return VAR.sub(substitute, value)


def tocsin_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if n not in INFRA}


def command(service: dict[str, Any]) -> str:
    return service.get("command", ["?"])[0]


# --- structure --------------------------------------------------------------------------------


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == INFRA | ONE_SHOTS | SERVICES | TOOLS
    for name in SERVICES:
        assert command(compose["services"][name]) == name
    assert compose["services"]["migrate"]["command"] == ["migrate"]
    assert compose["services"]["admin"]["profiles"] == ["tools"]


def test_tocsin_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name, service in tocsin_services(compose).items():
        assert service["image"].startswith("${TOCSIN_IMAGE")
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        uid, gid = service["user"].split(":")
        assert int(uid) != 0 and int(gid) != 0, name
        assert service["init"] is True
        assert any(t.startswith("/tmp:") for t in service["tmpfs"]), name


def test_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name in INFRA | SERVICES:
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD"
        assert parse_duration(check["interval"]) > 0 and check["retries"] >= 3
    for name in ONE_SHOTS | TOOLS:
        assert "healthcheck" not in compose["services"][name]
        assert compose["services"][name]["restart"] == "no"
    for name in SERVICES | INFRA:
        assert compose["services"][name]["restart"] == "unless-stopped"


def test_http_services_are_checked_on_their_listen_port(compose: dict[str, Any]) -> None:
    for name, var in (("ingest", "TOCSIN_INGEST__LISTEN"), ("api", "TOCSIN_API__LISTEN")):
        service = compose["services"][name]
        port = service["environment"][var].rsplit(":", 1)[1]
        assert service["healthcheck"]["test"] == ["CMD", "tocsin-healthcheck", "--http", f"http://127.0.0.1:{port}/readyz"]
        published = interpolate(service["ports"][0], {})
        assert published.startswith("127.0.0.1:") and published.endswith(f":{port}")


def test_scheduler_and_worker_are_checked_on_their_observability_listener(compose: dict[str, Any]) -> None:
    for name in ("scheduler", "worker"):
        service = compose["services"][name]
        port = service["environment"]["TOCSIN_TELEMETRY__LISTEN"].rsplit(":", 1)[1]
        assert service["healthcheck"]["test"] == ["CMD", "tocsin-healthcheck", "--http", f"http://127.0.0.1:{port}/readyz"]
        assert "ports" not in service


def dependencies(compose: dict[str, Any], name: str) -> dict[str, str]:
    return {dep: spec["condition"] for dep, spec in compose["services"][name].get("depends_on", {}).items()}


def test_dependency_order(compose: dict[str, Any]) -> None:
    healthy, done = "service_healthy", "service_completed_successfully"
    assert dependencies(compose, "postgres") == {} and dependencies(compose, "nats") == {}
    assert dependencies(compose, "migrate") == {"postgres": healthy}
    assert dependencies(compose, "tenant") == {"migrate": done}
    assert dependencies(compose, "deploy") == {"tenant": done}
    for name in ("ingest", "scheduler", "worker"):
        assert dependencies(compose, name) == {"migrate": done, "nats": healthy}
    assert dependencies(compose, "api") == {"migrate": done}


def start_order(compose: dict[str, Any]) -> list[str]:
    order: list[str] = []
    pending = set(compose["services"])
    while pending:
        ready = sorted(n for n in pending if set(dependencies(compose, n)) <= set(order))
        assert ready, f"dependency cycle among {pending}"
        order += ready
        pending -= set(ready)
    return order


def test_start_order_has_migrations_before_any_service(compose: dict[str, Any]) -> None:
    order = start_order(compose)
    for name in SERVICES | {"tenant", "deploy"}:
        assert order.index("migrate") < order.index(name)
    assert order.index("postgres") < order.index("migrate")
    assert order.index("tenant") < order.index("deploy")
    for name in ("ingest", "scheduler", "worker"):
        assert order.index("nats") < order.index(name)


def test_one_shot_deploy_reads_playbooks_from_the_host(compose: dict[str, Any]) -> None:
    deploy = compose["services"]["deploy"]
    assert deploy["command"][:2] == ["deploy", "/playbooks"]
    assert "--tenant" in deploy["command"]
    (mount,) = deploy["volumes"]
    host, target, mode = interpolate(mount, {}).split(":")
    assert (target, mode) == ("/playbooks", "ro")
    assert (DEPLOY / host).is_dir(), "the default playbook directory exists in the repository"
    tenant = compose["services"]["tenant"]["command"]
    assert tenant[:2] == ["tenant", "create"]
    assert interpolate(tenant[2], {}) == interpolate(deploy["command"][3], {})


def test_nats_runs_jetstream_with_sync_always_from_a_mounted_file(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    config_mount = next(v for v in nats["volumes"] if v.startswith("./compose/"))
    host, target, mode = config_mount.split(":")
    assert mode == "ro" and nats["command"] == ["--config", target]
    text = (DEPLOY / host).read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.M)
    assert re.search(r"^jetstream\s*\{", text, re.M)
    store_dir = re.search(r"^\s*store_dir:\s*(\S+)", text, re.M).group(1)
    assert any(v.split(":")[1] == store_dir for v in nats["volumes"] if not v.startswith("./"))
    assert "$NATS_PASSWORD" in text


# --- configuration and secrets ----------------------------------------------------------------


def test_each_service_gets_only_sections_its_command_accepts(compose: dict[str, Any]) -> None:
    for name, service in tocsin_services(compose).items():
        cmd = "stack" if name == "admin" else command(service)
        allowed = sections_for(cmd)
        for var in service["environment"]:
            section = env_section(var)
            assert section is None or section in allowed, f"{name}: {var}"


def test_secrets_are_required_variables_never_literals(compose: dict[str, Any]) -> None:
    with pytest.raises(MissingVariable):
        interpolate(compose["services"]["ingest"]["environment"], {})
    for name, service in tocsin_services(compose).items():
        env = service["environment"]
        assert re.fullmatch(r"postgres://tocsin:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/tocsin", env["TOCSIN_POSTGRES__URL"])
        if "TOCSIN_NATS__URL" in env:
            assert "${NATS_PASSWORD:?" in env["TOCSIN_NATS__URL"]
        if "TOCSIN_SECRETS__MASTER_KEY" in env:
            assert name in ("worker", "ingest", "api", "admin")
            assert env["TOCSIN_SECRETS__MASTER_KEY"].startswith("${TOCSIN_MASTER_KEY:?")
    assert "TOCSIN_SECRETS__MASTER_KEY" in compose["services"]["worker"]["environment"]


def test_the_secrets_example_lists_every_required_variable(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == set(SECRETS)
    example = SECRETS_EXAMPLE.read_text()
    for name in required:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} missing (or pre-filled) in {SECRETS_EXAMPLE.name}"
    for name in set(re.findall(r"\$\{([A-Z0-9_]+):-", text)):
        assert f"# {name}=" in example, f"optional {name} not documented in {SECRETS_EXAMPLE.name}"


def test_stop_grace_outlasts_every_drain_step(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        service = compose["services"][name]
        grace = parse_duration(service["environment"]["TOCSIN_SHUTDOWN__GRACE"])
        assert parse_duration(service["stop_grace_period"]) > DRAIN_STEPS[name] * grace, name


def test_worker_bundle_dir_is_writable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    bundle_dir = worker["environment"]["TOCSIN_WORKER__BUNDLE_DIR"]
    mount = next(t for t in worker["tmpfs"] if t.split(":")[0] == bundle_dir)
    assert "uid=10001" in mount
    assert any(t.startswith("/tmp:") for t in worker["tmpfs"])


def test_service_environment_passes_tocsin_check_config(compose: dict[str, Any]) -> None:
    binary = tocsin_binary()
    if binary is None:
        pytest.skip("no target/debug/tocsin (build it, or set TOCSIN_BIN) to check configurations with")
    for name in sorted(SERVICES):
        env = {k: str(v) for k, v in interpolate(compose["services"][name]["environment"], SECRETS).items()}
        env["PATH"] = "/usr/bin:/bin"
        result = subprocess.run([str(binary), name, "--check-config"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{name}: {result.stderr}"


# --- the health-check script ------------------------------------------------------------------


def run_healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=30)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_healthcheck_http(http_server: str) -> None:
    assert run_healthcheck("--http", f"{http_server}/readyz").returncode == 0
    failed = run_healthcheck("--http", f"{http_server}/other")
    assert failed.returncode == 1 and "503" in failed.stderr
    assert run_healthcheck("--http", "http://127.0.0.1:1/readyz", "--timeout", "1").returncode == 1


def test_healthcheck_connected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert run_healthcheck("--connected", str(port)).returncode == 1
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = listener.accept()
            with conn:
                assert run_healthcheck("--connected", str(port)).returncode == 0


def test_healthcheck_runners_and_usage() -> None:
    # no `tocsin runner` processes here
    failed = run_healthcheck("--runners", "1")
    assert failed.returncode == 1 and "runner processes" in failed.stderr
    assert run_healthcheck().returncode == 2


def test_healthcheck_counts_runner_processes(tmp_path: Path) -> None:
    # A process whose command line is `.../tocsin runner`: a copy of cat, blocked opening a
    # FIFO named "runner".
    fake = tmp_path / "tocsin"
    shutil.copy(shutil.which("cat") or "/bin/cat", fake)
    os.mkfifo(tmp_path / "runner")
    proc = subprocess.Popen([str(fake), "runner"], cwd=tmp_path)
    try:
        assert run_healthcheck("--runners", "1").returncode == 0
        assert run_healthcheck("--runners", "2").returncode == 1
    finally:
        proc.kill()
        proc.wait()
