"""Helpers for the deployment tests (deploy/tests): render the Helm chart offline, read the compose
file, and know which configuration sections each `tocsin` command accepts.

Everything runs without a cluster, a Docker engine or the network: the chart is rendered by
the Helm SDK bundled in the `helm-python-sdk` wheel, Kubernetes objects are checked against
the schemas bundled in `kubernetes-validate`, and the KEDA ScaledObject against the CRD
vendored under schemas/.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tocsin"
MULTIPOOL_VALUES = CHART / "ci" / "multipool-values.yaml"
COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

# Kubernetes versions the rendered objects must be valid for (schemas bundled in
# kubernetes-validate): the oldest release the chart supports and a current one.
K8S_VERSIONS = ("1.30.0", "1.34.0")

# Sections each command's configuration struct has; the loader (figment, deny_unknown_fields)
# rejects a TOCSIN_<SECTION>__* variable of any other section, so a container may carry only
# these. From ingest/src/config.rs, scheduler/src/config.rs, worker/src/config.rs,
# api/src/lib.rs and cli/src/stack.rs (StackConfig: migrate, deploy, tenant, key, secret).
SECTIONS = {
    "ingest": {"ingest", "nats", "postgres", "secrets", "telemetry", "shutdown"},
    "scheduler": {"scheduler", "nats", "postgres", "telemetry", "shutdown"},
    "worker": {"worker", "nats", "postgres", "secrets", "telemetry", "shutdown"},
    "api": {"api", "postgres", "secrets", "telemetry", "shutdown"},
    "stack": {"ingest", "scheduler", "worker", "api", "nats", "postgres", "secrets", "telemetry", "shutdown"},
}
STACK_COMMANDS = {"migrate", "deploy", "tenant", "key", "secret"}

# How many sequential steps, each bounded by shutdown.grace, a service's drain can take
# (see docs/deploy.md, "Shutdown"), and the preStop sleep in front of it.
DRAIN_STEPS = {"ingest": 2, "api": 1, "scheduler": 2, "worker": 4}

ENV_NAME = re.compile(r"^TOCSIN_([A-Z0-9_]+?)__([A-Z0-9_]+)$")


def sections_for(command: str) -> set[str]:
    return SECTIONS["stack"] if command in STACK_COMMANDS else SECTIONS[command]


def env_section(name: str) -> str | None:
    """`TOCSIN_WORKER__RUNNERS` -> "worker"; None for variables the loader ignores."""
    match = ENV_NAME.match(name)
    return match.group(1).lower() if match else None


def parse_duration(text: str) -> float:
    """A humantime duration as the services write it (`20s`, `2m`, `1m30s`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u] for n, u in parts)


# --- Helm -------------------------------------------------------------------------------------


@dataclass
class Rendered:
    """The objects a chart render produced, with the template each came from."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)} in {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "Job")]


def render(values: dict[str, Any] | None = None, release: str = "tocsin", namespace: str = "tocsin") -> Rendered:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    rendered = Rendered()
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                rendered.objects.append(doc)
                rendered.sources.append(path)
    return rendered


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def container(workload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """Container env as name -> literal value, or ("secret", name, key) for secretKeyRefs."""
    out: dict[str, Any] = {}
    for item in c.get("env", []):
        assert item["name"] not in out, f"duplicate env {item['name']}"
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            out[item["name"]] = ("secret", ref["name"], ref["key"])
        else:
            out[item["name"]] = item.get("value", "")
    return out


# --- the tocsin binary (optional) -------------------------------------------------------------

DUMMY_SECRETS = {
    "TOCSIN_POSTGRES__URL": "postgres://tocsin:secret@db.example:5432/tocsin",
    "TOCSIN_NATS__URL": "nats://tocsin:secret@nats.example:4222",
    "TOCSIN_SECRETS__MASTER_KEY": base64.b64encode(bytes(range(32))).decode(),
}


def tocsin_binary() -> Path | None:
    """The `tocsin` built by `cargo test`/`cargo build` (or $TOCSIN_BIN), if there is one."""
    given = os.environ.get("TOCSIN_BIN")
    candidates = [Path(given)] if given else [REPO / "target" / "debug" / "tocsin", REPO / "target" / "release" / "tocsin"]
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)
