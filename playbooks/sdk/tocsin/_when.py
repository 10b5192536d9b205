"""Validation (and a reference evaluator) for playbook ``when`` conditions.

A ``when`` condition is plain data so that the Rust scheduler can evaluate it
without running Python. Its shape::

    when = {
        "source": ["suricata", "wazuh"],          # list  -> any of
        "severity": {"gte": "high"},              # dict  -> exactly one operator
        "raw.rule.level": {"gte": 10},            # raw (source-specific) field
        "observables.ip": {"exists": True},
        "any": [{"tags": {"contains": "phishing"}}, {"title": {"matches": "(?i)phish"}}],
    }

* Top-level keys are ANDed. The special key ``"any"`` takes a list of such
  dicts and holds when at least one of them holds (OR); ``any`` may nest.
* A field path is one of ``id``, ``tenant``, ``source``, ``source_ref``,
  ``title``, ``description``, ``severity``, ``tags``, ``observables.<type>``
  (``<type>`` in ``ip, domain, url, hash, email, user, host``) or
  ``raw.<dotted.path>`` into the source-specific payload.
* A condition is a plain value (equality), a list (any of) or a dict with
  exactly one operator: ``eq``, ``ne``, ``in`` (list), ``gte``, ``gt``,
  ``lte``, ``lt``, ``contains``, ``matches`` (regular expression, searched
  anywhere in the value) or ``exists`` (bool).
* Values compared with ``severity`` must be severity names (``info < low <
  medium < high < critical``); they are stored lower-cased.

:func:`validate_when` checks a condition and returns its normalised copy (the
form exported to the platform). :func:`evaluate` is a reference implementation
of the matching semantics, handy for unit-testing playbooks locally; the
scheduler's evaluation is authoritative.

Reference semantics (those of the scheduler, ``scheduler/src/when.rs``):

* A path resolves against the JSON view ``{"id", "tenant", "source",
  "source_ref", "title", "description", "severity", "tags", "observables":
  {<type>: [values]}, "raw"}``; object keys are followed by name and list
  elements by numeric index (``raw.rule.mitre.id.0``). Normalised fields are
  always present (possibly ``""`` or ``[]``); ``observables.<type>`` is
  missing when the alert has no observable of that type; a ``raw`` path is
  missing when it does not resolve or resolves to ``null``.
* On a list-valued field an operator holds when it holds for any element;
  ``ne`` holds when no element equals the value, ``contains`` when some
  element equals it, ``exists`` looks at the field as a whole.
* On a missing field every operator is false except ``ne`` and
  ``exists: false``.
* Equality: severities compare case-insensitively (``informational`` is
  ``info``); when either side is a number, both sides are read as numbers
  (numeric strings included: ``"12" == 12``); otherwise values must be
  identical JSON (``true != 1``).
* Ordering (``gte``, ``gt``, ``lte``, ``lt``): severities by rank, then
  numbers or numeric strings numerically, then two strings lexicographically;
  anything else is false.
* ``contains`` on a string is a substring test; ``matches`` searches strings
  and the decimal form of numbers.
* Regular expressions are compiled by the scheduler with the Rust ``regex``
  crate, which has no look-around, backreferences or octal escapes; such
  patterns are rejected here.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from ._types import OBSERVABLE_TYPES, SEVERITIES

__all__ = ["OPERATORS", "FIELDS", "validate_when", "evaluate"]

#: Operators allowed in a condition dict.
OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "gte", "gt", "lte", "lt", "contains", "matches", "exists")

#: Normalised alert fields that may be used as a condition key.
FIELDS: tuple[str, ...] = ("id", "tenant", "source", "source_ref", "title", "description", "severity", "tags")

_ORDERING = ("gte", "gt", "lte", "lt")
_MISSING = object()


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def validate_when(when: object) -> dict[str, Any] | None:
    """Validate a ``when`` condition and return its normalised copy.

    ``None`` (match every alert) is returned unchanged.

    :raises ValueError: with a message naming the offending key.
    """
    if when is None:
        return None
    return _validate_block(when, "when")


def _validate_block(block: object, where: str) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}: expected a dict of field -> condition, got {type(block).__name__}")
    result: dict[str, Any] = {}
    for key, condition in block.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: keys must be strings, got {key!r}")
        if key == "any":
            result[key] = _validate_any(condition, f"{where}['any']")
            continue
        _validate_path(key, where)
        result[key] = _validate_condition(key, condition, f"{where}[{key!r}]")
    return result


def _validate_any(alternatives: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(alternatives, (list, tuple)) or not alternatives:
        raise ValueError(f"{where}: expected a non-empty list of condition dicts")
    out = []
    for index, alternative in enumerate(alternatives):
        sub = _validate_block(alternative, f"{where}[{index}]")
        if not sub:
            raise ValueError(f"{where}[{index}]: an empty condition dict would always match")
        out.append(sub)
    return out


def _validate_path(path: str, where: str) -> None:
    parts = path.split(".")
    if not path or any(not part for part in parts):
        raise ValueError(f"{where}: invalid field path {path!r} (empty segment)")
    root = parts[0]
    if root == "raw":
        if len(parts) < 2:
            raise ValueError(f"{where}: field 'raw' needs a path, e.g. 'raw.rule.level'")
        return
    if root == "observables":
        if len(parts) != 2 or parts[1] not in OBSERVABLE_TYPES:
            raise ValueError(
                f"{where}: invalid field {path!r}; use 'observables.<type>' with type one of "
                f"{', '.join(OBSERVABLE_TYPES)}"
            )
        return
    if root in FIELDS:
        if len(parts) != 1:
            raise ValueError(f"{where}: field {root!r} has no sub-fields (got {path!r})")
        return
    raise ValueError(
        f"{where}: unknown field {path!r}; expected one of {', '.join(FIELDS)}, "
        f"'observables.<type>' or 'raw.<path>' (for source-specific fields, e.g. 'raw.{path}')"
    )


def _validate_scalar(value: object, where: str, *, field: str) -> Any:
    """A JSON scalar usable in comparisons (str, number or bool; never null)."""
    if value is None:
        raise ValueError(f"{where}: null is not a valid value; use {{'exists': false}} to test for absence")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: number must be finite, got {value!r}")
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{where}: expected a string, number or bool, got {type(value).__name__}")
    if field == "severity":
        return _severity(value, where)
    return value


def _severity(value: object, where: str) -> str:
    if isinstance(value, str):
        name = value.strip().lower()
        name = "info" if name == "informational" else name
        if name in SEVERITIES:
            return name
    raise ValueError(f"{where}: invalid severity {value!r}; expected one of {', '.join(SEVERITIES)}")


def _validate_list(values: object, where: str, *, field: str) -> list[Any]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{where}: expected a non-empty list of values")
    return [_validate_scalar(v, f"{where}[{i}]", field=field) for i, v in enumerate(values)]


def _validate_condition(field: str, condition: object, where: str) -> Any:
    if isinstance(condition, (list, tuple)):
        return _validate_list(condition, where, field=field)
    if not isinstance(condition, Mapping):
        return _validate_scalar(condition, where, field=field)
    if len(condition) != 1:
        raise ValueError(
            f"{where}: a condition dict must have exactly one operator among {', '.join(OPERATORS)}, "
            f"got {sorted(map(str, condition)) or 'none'}"
        )
    ((op, value),) = condition.items()
    op_where = f"{where}[{op!r}]"
    if op not in OPERATORS:
        raise ValueError(f"{where}: unknown operator {op!r}; expected one of {', '.join(OPERATORS)}")
    if op in ("eq", "ne"):
        return {op: _validate_scalar(value, op_where, field=field)}
    if op == "in":
        return {op: _validate_list(value, op_where, field=field)}
    if op in _ORDERING:
        if field == "severity":
            return {op: _severity(value, op_where)}
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{op_where}: expected a number or a string, got {value!r}")
        return {op: _validate_scalar(value, op_where, field=field)}
    if op == "contains":
        if isinstance(value, (Mapping, list, tuple)) or value is None:
            raise ValueError(f"{op_where}: expected a string, number or bool, got {value!r}")
        return {op: _validate_scalar(value, op_where, field="")}
    if op == "matches":
        if not isinstance(value, str):
            raise ValueError(f"{op_where}: expected a regular expression string, got {type(value).__name__}")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{op_where}: invalid regular expression {value!r}: {exc}") from None
        unsupported = _unsupported_regex_feature(value)
        if unsupported:
            raise ValueError(
                f"{op_where}: regular expression {value!r} uses {unsupported}, which the scheduler's "
                "regex engine does not support"
            )
        return {op: value}
    # op == "exists"
    if not isinstance(value, bool):
        raise ValueError(f"{op_where}: expected true or false, got {value!r}")
    return {op: value}


def _unsupported_regex_feature(pattern: str) -> str | None:
    """Name of a construct the Rust ``regex`` crate rejects, if ``pattern`` uses one
    (look-around, backreferences, octal escapes); ``None`` otherwise."""
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if pattern[i + 1 : i + 2].isdigit():
                return "a backreference or octal escape"
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            # a ']' right after '[' or '[^' is a literal
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif char == "(":
            head = pattern[i + 1 : i + 5]
            if head.startswith(("?=", "?!", "?<=", "?<!")):
                return "look-around"
            if head.startswith("?P="):
                return "a backreference"
        i += 1
    return None


# ---------------------------------------------------------------------------
# reference evaluation
# ---------------------------------------------------------------------------


def evaluate(when: Mapping[str, Any] | None, alert: Any) -> bool:
    """Return whether ``alert`` (an :class:`~tocsin.Alert` or its dict form)
    satisfies the (already validated) ``when`` condition."""
    if when is None:
        return True
    if not hasattr(alert, "to_dict"):
        from ._types import Alert

        alert = Alert.from_dict(alert)
    return _eval_block(when, alert)


def _eval_block(block: Mapping[str, Any], alert: Any) -> bool:
    for key, condition in block.items():
        if key == "any":
            if not any(_eval_block(sub, alert) for sub in condition):
                return False
        elif not _eval_condition(key, _resolve(key, alert), condition):
            return False
    return True


def _resolve(path: str, alert: Any) -> Any:
    parts = path.split(".")
    root = parts[0]
    if root == "raw":
        value: Any = alert.raw
        rest = parts[1:]
    elif root == "observables":
        if len(parts) < 2:
            return _MISSING
        value = list(alert.observables.of(parts[1]))
        if not value:
            return _MISSING
        rest = parts[2:]
    elif root == "tags":
        value, rest = list(alert.tags), parts[1:]
    elif root in FIELDS:
        value, rest = getattr(alert, root), parts[1:]
    else:
        return _MISSING
    for part in rest:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return _MISSING if value is None else value


def _eval_condition(field: str, value: Any, condition: Any) -> bool:
    if isinstance(condition, list):
        op, operand = "in", condition
    elif isinstance(condition, Mapping):
        ((op, operand),) = condition.items()
    else:
        op, operand = "eq", condition
    if op == "exists":
        return (value is not _MISSING) == operand
    severity = field == "severity"
    if op == "ne":
        return value is _MISSING or not any(_equal(item, operand, severity) for item in _elements(value))
    if value is _MISSING:
        return False
    if op == "contains":
        if isinstance(value, list):
            return any(_equal(item, operand, severity) for item in value)
        return isinstance(value, str) and isinstance(operand, str) and operand in value
    return any(_test(op, item, operand, severity) for item in _elements(value))


def _elements(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _test(op: str, value: Any, operand: Any, severity: bool) -> bool:
    if op == "eq":
        return _equal(value, operand, severity)
    if op == "in":
        return any(_equal(value, candidate, severity) for candidate in operand)
    if op == "matches":
        if _is_number(value):
            value = str(value)
        return isinstance(value, str) and re.search(operand, value) is not None
    order = _compare(value, operand, severity)
    if order is None:
        return False
    if op == "gte":
        return order >= 0
    if op == "gt":
        return order > 0
    if op == "lte":
        return order <= 0
    return order < 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    """A number, or a string holding one (as the scheduler reads them)."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and "_" not in value:
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _as_severity(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    name = "info" if name == "informational" else name
    return SEVERITIES.index(name) if name in SEVERITIES else None


def _sign(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _compare(value: Any, operand: Any, severity: bool) -> int | None:
    if severity:
        a, b = _as_severity(value), _as_severity(operand)
        return None if a is None or b is None else _sign(a, b)
    x, y = _as_number(value), _as_number(operand)
    if x is not None and y is not None:
        if math.isnan(x) or math.isnan(y):
            return None
        return _sign(x, y)
    if isinstance(value, str) and isinstance(operand, str):
        return _sign(value, operand)
    return None


def _equal(value: Any, operand: Any, severity: bool) -> bool:
    if severity:
        a, b = _as_severity(value), _as_severity(operand)
        if a is not None and b is not None:
            return a == b
    if _is_number(value) or _is_number(operand):
        x, y = _as_number(value), _as_number(operand)
        return x is not None and y is not None and x == y
    if isinstance(value, bool) or isinstance(operand, bool):
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    return type(value) is type(operand) and value == operand
