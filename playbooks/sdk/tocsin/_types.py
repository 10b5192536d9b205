"""Core data types handed to playbooks: :class:`Alert`, :class:`Observable`,
:class:`Observables`, plus the control-flow exceptions :class:`Skip`,
:class:`RunAborted` and :class:`ActionFailed`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

__all__ = [
    "SEVERITIES",
    "OBSERVABLE_TYPES",
    "Observable",
    "Observables",
    "Alert",
    "Skip",
    "RunAborted",
    "ActionFailed",
    "normalize_severity",
]

#: Alert severities, from least to most severe. Comparisons in ``when``
#: conditions (``gte``, ``lt`` ...) follow this order.
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

#: Observable types understood by the platform. Other types are carried
#: through unchanged but have no convenience property on :class:`Observables`
#: (use :meth:`Observables.of`).
OBSERVABLE_TYPES: tuple[str, ...] = ("ip", "domain", "url", "hash", "email", "user", "host")

# Keys of the alert dict that map onto Alert attributes. Anything else found
# in a dict without an explicit "raw" key is kept in ``Alert.raw``.
_ALERT_KEYS = frozenset(
    {
        "id",
        "tenant",
        "source",
        "source_ref",
        "title",
        "description",
        "severity",
        "occurred_at",
        "received_at",
        "tags",
        "observables",
        "raw",
    }
)


class Skip(BaseException):
    """Raised by :meth:`tocsin.Run.skip` to end a run with status ``skipped``.

    It derives from :class:`BaseException` (like :class:`SystemExit`) so that a
    broad ``except Exception`` in a playbook does not accidentally swallow it.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = str(reason)

    def __str__(self) -> str:
        return self.reason


class RunAborted(BaseException):
    """The platform told this run to stop (e.g. the run was cancelled or timed
    out on the server side while an action was waiting for its decision).

    It derives from :class:`BaseException` so a playbook's ``except Exception``
    cannot swallow it: the run always ends with :attr:`status`.
    """

    def __init__(self, status: str, reason: str = "") -> None:
        super().__init__(status, reason)
        self.status = str(status)
        self.reason = str(reason)

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status


class ActionFailed(Exception):
    """A replayed action had failed in an earlier attempt of the run; its
    recorded error is re-raised as this exception instead of re-executing it."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = str(error)


def normalize_severity(value: object) -> str:
    """Return ``value`` as a lower-case severity name.

    ``informational`` is accepted as an alias of ``info``.

    :raises ValueError: if it is not one of :data:`SEVERITIES` (case-insensitive).
    """
    if isinstance(value, str):
        name = value.strip().lower()
        name = "info" if name == "informational" else name
        if name in SEVERITIES:
            return name
    raise ValueError(f"invalid severity {value!r}; expected one of {', '.join(SEVERITIES)}")


@dataclass(frozen=True, slots=True)
class Observable:
    """One indicator attached to an alert, e.g. ``Observable("ip", "10.0.0.1")``.

    ``type`` is normalised to lower case; see :data:`OBSERVABLE_TYPES`.
    """

    type: str
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type.strip():
            raise ValueError(f"observable type must be a non-empty string, got {self.type!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (str, int, float)):
            raise ValueError(f"observable value must be a string, got {type(self.value).__name__}")
        value = str(self.value).strip()
        if not value:
            raise ValueError(f"observable of type {self.type!r} has an empty value")
        object.__setattr__(self, "type", self.type.strip().lower())
        object.__setattr__(self, "value", value)

    @classmethod
    def coerce(cls, item: object) -> "Observable":
        """Build an observable from an ``Observable``, a ``{"type", "value"}``
        mapping or a ``(type, value)`` pair."""
        if isinstance(item, Observable):
            return item
        if isinstance(item, Mapping):
            if "type" not in item or "value" not in item:
                raise ValueError(f"observable must have 'type' and 'value' keys, got {dict(item)!r}")
            return cls(item["type"], item["value"])
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return cls(item[0], item[1])
        raise ValueError(f"cannot build an observable from {item!r}")

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


class Observables(tuple):
    """The observables of an alert: an immutable tuple of :class:`Observable`
    with per-type accessors.

    It behaves like a plain tuple (iteration, ``len``, indexing, slicing,
    comparison with tuples) and adds::

        alert.observables.ips          # ("192.0.2.10", ...)
        alert.observables.of("file")   # any type, known or not

    Accessors return the values of that type, de-duplicated, in order.
    Items are coerced with :meth:`Observable.coerce`, so the constructor
    accepts ``Observable`` objects, ``{"type", "value"}`` mappings and
    ``(type, value)`` pairs.
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] = ()) -> "Observables":
        if isinstance(items, Observables):
            return items if cls is type(items) else super().__new__(cls, items)
        if items is None:
            items = ()
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise ValueError("alert field 'observables': expected a list of {type, value} objects")
        return super().__new__(cls, (Observable.coerce(o) for o in items))

    def __repr__(self) -> str:
        return f"Observables({tuple.__repr__(self)})"

    def __getitem__(self, index):  # type: ignore[override]
        result = tuple.__getitem__(self, index)
        # Slices stay typed collections; integer indexing returns an Observable.
        return Observables(result) if isinstance(index, slice) else result

    def __getnewargs__(self) -> tuple[tuple[Observable, ...]]:
        return (tuple(self),)

    def of(self, type: str) -> tuple[str, ...]:
        """Values of all observables of ``type`` (case-insensitive;
        de-duplicated, in order)."""
        wanted = type.strip().lower()
        return _unique(o.value for o in self if o.type == wanted)

    def to_list(self) -> list[dict[str, str]]:
        """The JSON form: a list of ``{"type": ..., "value": ...}``."""
        return [o.to_dict() for o in self]

    @property
    def ips(self) -> tuple[str, ...]:
        return self.of("ip")

    @property
    def domains(self) -> tuple[str, ...]:
        return self.of("domain")

    @property
    def urls(self) -> tuple[str, ...]:
        return self.of("url")

    @property
    def hashes(self) -> tuple[str, ...]:
        return self.of("hash")

    @property
    def emails(self) -> tuple[str, ...]:
        return self.of("email")

    @property
    def users(self) -> tuple[str, ...]:
        return self.of("user")

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.of("host")


def _parse_timestamp(value: object, key: str) -> datetime | None:
    """Parse an RFC 3339 timestamp (or Unix seconds) into an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"alert field {key!r}: invalid timestamp {value!r}")
        parsed = datetime.fromtimestamp(value, tz=timezone.utc)
    elif isinstance(value, str):
        try:
            # Python 3.11 accepts RFC 3339 including 'Z' and >6 fractional digits.
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"alert field {key!r}: invalid RFC 3339 timestamp {value!r}") from None
    else:
        raise ValueError(f"alert field {key!r}: expected an RFC 3339 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _format_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _text(value: object, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"alert field {key!r}: expected a string, got {type(value).__name__}")


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Alert:
    """A normalised alert, as delivered to playbooks.

    Instances are immutable. ``raw`` holds the source-specific payload (the
    fields that were not mapped onto the normalised attributes); treat it as
    read-only.
    """

    id: str = ""
    tenant: str = ""
    source: str = ""
    source_ref: str = ""
    title: str = ""
    description: str = ""
    severity: str = "info"
    occurred_at: datetime | None = None
    received_at: datetime | None = None
    tags: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, hash=False)
    observables: Observables = Observables()

    def __post_init__(self) -> None:
        for key in ("id", "tenant", "source", "source_ref", "title", "description"):
            object.__setattr__(self, key, _text(getattr(self, key), key))
        object.__setattr__(self, "severity", normalize_severity(self.severity))
        object.__setattr__(self, "occurred_at", _parse_timestamp(self.occurred_at, "occurred_at"))
        object.__setattr__(self, "received_at", _parse_timestamp(self.received_at, "received_at"))
        tags = self.tags
        if tags is None:
            tags = ()
        if isinstance(tags, str) or not isinstance(tags, Iterable):
            raise ValueError(f"alert field 'tags': expected a list of strings, got {type(tags).__name__}")
        tags = tuple(tags)
        for tag in tags:
            if not isinstance(tag, str):
                raise ValueError(f"alert field 'tags': expected strings, got {tag!r}")
        object.__setattr__(self, "tags", tags)
        raw = self.raw if self.raw is not None else {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"alert field 'raw': expected an object, got {type(raw).__name__}")
        object.__setattr__(self, "raw", dict(raw))
        object.__setattr__(self, "observables", Observables(self.observables))

    # -- construction / serialisation -------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Alert":
        """Build an alert from its JSON form.

        Expected keys: ``id``, ``tenant``, ``source``, ``source_ref``,
        ``title``, ``description``, ``severity`` (``info|low|medium|high|critical``,
        case-insensitive; defaults to ``info``), ``occurred_at`` /
        ``received_at`` (RFC 3339), ``tags`` (list of strings),
        ``observables`` (list of ``{"type": ..., "value": ...}``) and ``raw``
        (object). When ``raw`` is absent, every key that is not one of the
        above is collected into ``raw`` (this is how Tocsin's generic ingest
        format carries source-specific fields).

        :raises ValueError: on malformed fields.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"alert must be a JSON object, got {type(data).__name__}")
        if "raw" in data:
            raw = data["raw"]
        else:
            raw = {k: v for k, v in data.items() if k not in _ALERT_KEYS}
        severity = data.get("severity")
        return cls(
            id=data.get("id"),
            tenant=data.get("tenant"),
            source=data.get("source"),
            source_ref=data.get("source_ref"),
            title=data.get("title"),
            description=data.get("description"),
            severity="info" if severity is None else severity,
            occurred_at=data.get("occurred_at"),
            received_at=data.get("received_at"),
            tags=data.get("tags"),
            raw=raw,
            observables=data.get("observables"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form accepted by :meth:`from_dict`."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "source": self.source,
            "source_ref": self.source_ref,
            "title": self.title,
            "description": self.description,
            "severity": self.severity,
            "occurred_at": _format_timestamp(self.occurred_at),
            "received_at": _format_timestamp(self.received_at),
            "tags": list(self.tags),
            "observables": self.observables.to_list(),
            "raw": dict(self.raw),
        }

    @classmethod
    def build(
        cls,
        title: str = "t",
        severity: str = "high",
        source: str = "test",
        observables: Iterable[Any] = (),
        **fields: Any,
    ) -> "Alert":
        """Convenience constructor for tests.

        >>> alert = Alert.build(title="Port scan", observables=[("ip", "203.0.113.7")])
        >>> alert.observables.ips
        ('203.0.113.7',)

        Other attributes (``id``, ``tenant``, ``source_ref``, ``description``,
        ``tags``, ``raw``, ``occurred_at``, ``received_at``) may be passed as
        keywords. ``id`` defaults to a random ``test-...`` identifier and
        ``tenant`` to ``"default"``.
        """
        unknown = set(fields) - (_ALERT_KEYS - {"title", "severity", "source", "observables"})
        if unknown:
            raise TypeError(f"Alert.build() got unexpected field(s): {', '.join(sorted(unknown))}")
        fields.setdefault("id", f"test-{uuid.uuid4().hex[:12]}")
        fields.setdefault("tenant", "default")
        return cls(title=title, severity=severity, source=source, observables=Observables(observables), **fields)

    # -- observables (shortcuts for ``alert.observables.<type>``) ------------

    def observables_of(self, type: str) -> tuple[str, ...]:
        """Same as ``alert.observables.of(type)``."""
        return self.observables.of(type)

    @property
    def ips(self) -> tuple[str, ...]:
        """Same as ``alert.observables.ips``."""
        return self.observables.ips

    @property
    def domains(self) -> tuple[str, ...]:
        """Same as ``alert.observables.domains``."""
        return self.observables.domains

    @property
    def urls(self) -> tuple[str, ...]:
        """Same as ``alert.observables.urls``."""
        return self.observables.urls

    @property
    def hashes(self) -> tuple[str, ...]:
        """Same as ``alert.observables.hashes``."""
        return self.observables.hashes

    @property
    def emails(self) -> tuple[str, ...]:
        """Same as ``alert.observables.emails``."""
        return self.observables.emails

    @property
    def users(self) -> tuple[str, ...]:
        """Same as ``alert.observables.users``."""
        return self.observables.users

    @property
    def hosts(self) -> tuple[str, ...]:
        """Same as ``alert.observables.hosts``."""
        return self.observables.hosts
