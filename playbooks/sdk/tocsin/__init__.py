"""Tocsin playbook SDK.

Playbooks are plain async Python::

    import asyncio
    from tocsin import playbook, action, Alert, Run

    @action(retries=2, backoff="1s", timeout="10s", idempotent=True)
    async def lookup(ip: str) -> dict:
        ...

    @playbook(when={"source": "suricata", "severity": {"gte": "high"}})
    async def triage(alert: Alert, run: Run) -> dict:
        results = await asyncio.gather(*(lookup(ip) for ip in alert.observables.ips))
        run.log("enriched", count=len(results))
        return {"results": results}

Public API: :func:`playbook`, :func:`action`, :class:`Alert`,
:class:`Observable`, :class:`Observables`, :class:`Run`, :class:`Skip` (plus :class:`Playbook`,
:class:`Action`, :class:`RunAborted` and :class:`ActionFailed`).
The package has no third-party dependencies.
"""

from ._decorators import Action, Playbook, action, playbook
from ._run import Run
from ._types import OBSERVABLE_TYPES, SEVERITIES, ActionFailed, Alert, Observable, Observables, RunAborted, Skip

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
    "__version__",
]
