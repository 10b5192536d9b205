"""Tocsin playbook SDK.

Playbooks are plain async Python::

    import asyncio
    from tocsin import playbook, action, approval, http, Alert, Run

    @action(retries=2, backoff="1s", timeout="10s", idempotent=True)
    async def lookup(ip: str, api_key: str) -> dict:
        response = await http.get(f"https://intel.example/ip/{ip}", headers={"x-api-key": api_key})
        return response.raise_for_status().json()

    @playbook(when={"source": "suricata", "severity": {"gte": "high"}})
    async def triage(alert: Alert, run: Run) -> dict:
        key = run.secrets["INTEL_API_KEY"]
        results = await asyncio.gather(*(lookup(ip, key) for ip in alert.observables.ips))
        run.log("enriched", count=len(results))
        if any(r["malicious"] for r in results) and await approval("Isolate the host?"):
            await run.case.set_status("resolved", determination="true_positive")
        return {"results": results}

Public API:

* decorators and their objects: :func:`playbook`, :func:`action`,
  :class:`Playbook`, :class:`Action`;
* data: :class:`Alert`, :class:`Observable`, :class:`Observables`,
  :data:`SEVERITIES`, :data:`OBSERVABLE_TYPES`;
* the run: :class:`Run` (``run.case`` is a :class:`Case`, ``run.secrets`` a
  :class:`Secrets`), :func:`approval`, :func:`sleep`, :func:`idempotency_key`,
  :data:`CASE_STATUSES`, :data:`DETERMINATIONS`, :class:`CronSchedule`;
* control flow and errors: :class:`Skip`, :class:`RunAborted`,
  :class:`ActionFailed`, :class:`SecretNotFound`;
* HTTP: the :mod:`tocsin.http` module, with :class:`HTTPError`,
  :class:`HTTPStatusError`, :class:`HTTPTimeout` and :class:`Response`
  re-exported here;
* tests: the :mod:`tocsin.testing` module (``mock_alert``, ``run_playbook``).

The package has no third-party dependencies (:mod:`tocsin.http` uses httpx
when it is installed, outside the platform).
"""

from . import http
from ._cron import CronSchedule
from ._decorators import Action, Playbook, action, playbook
from ._run import Run, idempotency_key
from ._secrets import SecretNotFound, Secrets
from ._system import CASE_STATUSES, DETERMINATIONS, Case, approval, sleep
from ._types import OBSERVABLE_TYPES, SEVERITIES, ActionFailed, Alert, Observable, Observables, RunAborted, Skip
from .http import HTTPError, HTTPStatusError, HTTPTimeout, Response

__version__ = "0.1.0"

__all__ = [
    "playbook",
    "action",
    "Alert",
    "Observable",
    "Observables",
    "Run",
    "Skip",
    "Playbook",
    "Action",
    "RunAborted",
    "ActionFailed",
    "SEVERITIES",
    "OBSERVABLE_TYPES",
    "approval",
    "sleep",
    "idempotency_key",
    "Case",
    "CASE_STATUSES",
    "DETERMINATIONS",
    "Secrets",
    "SecretNotFound",
    "CronSchedule",
    "http",
    "HTTPError",
    "HTTPStatusError",
    "HTTPTimeout",
    "Response",
    "__version__",
]
