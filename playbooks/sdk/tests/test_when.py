"""Validation and reference evaluation of ``when`` conditions."""

from __future__ import annotations

import pytest

from tocsin import Alert
from tocsin._when import evaluate, validate_when


def test_none_and_empty():
    assert validate_when(None) is None
    assert validate_when({}) == {}


def test_all_operators_accepted():
    when = {
        "source": "suricata",
        "tags": ["a", "b"],
        "title": {"matches": r"(?i)scan"},
        "description": {"contains": "nmap"},
        "source_ref": {"ne": "x"},
        "severity": {"in": ["High", "CRITICAL"]},
        "observables.ip": {"exists": True},
        "raw.rule.level": {"gte": 10},
        "raw.a": {"gt": 1.5},
        "raw.b": {"lte": "m"},
        "raw.c": {"lt": 3},
        "raw.d": {"eq": False},
        "any": [{"tenant": "acme"}, {"id": {"in": ["x", "y"]}}],
    }
    out = validate_when(when)
    assert out["severity"] == {"in": ["high", "critical"]}
    assert out["any"] == [{"tenant": "acme"}, {"id": {"in": ["x", "y"]}}]
    assert out["raw.rule.level"] == {"gte": 10}


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("source == x", "expected a dict"),
        ({"source": {}}, "exactly one operator"),
        ({"source": {"eq": "a", "ne": "b"}}, "exactly one operator"),
        ({"source": {"regex": "a"}}, "unknown operator 'regex'"),
        ({"source": {"in": "suricata"}}, r"\['source'\]\['in'\]: expected a non-empty list"),
        ({"source": []}, "non-empty list"),
        ({"title": {"matches": "[a-"}}, r"when\['title'\]\['matches'\]: invalid regular expression"),
        ({"title": {"matches": 5}}, "regular expression string"),
        ({"observables.ip": {"exists": "yes"}}, "expected true or false"),
        ({"severity": {"gt": "sev2"}}, r"when\['severity'\]\['gt'\]: invalid severity 'sev2'"),
        ({"severity": {"eq": 3}}, "invalid severity 3"),
        ({"severity": ["high", "nope"]}, "invalid severity 'nope'"),
        ({"raw.rule.level": {"gte": True}}, "expected a number or a string"),
        ({"raw.rule.level": {"gte": [1]}}, "expected a number or a string"),
        ({"raw.x": None}, "use {'exists': false}"),
        ({"raw.x": {"eq": {"a": 1}}}, "expected a string, number or bool"),
        ({"raw.x": float("nan")}, "finite"),
        ({"raw": 1}, "needs a path"),
        ({"raw..x": 1}, "empty segment"),
        ({"observables.ipv4": "1.2.3.4"}, "observables.<type>"),
        ({"observables": "1.2.3.4"}, "observables.<type>"),
        ({"title.x": "a"}, "has no sub-fields"),
        ({"rule.level": 3}, r"unknown field 'rule.level'.*raw.rule.level"),
        ({1: "a"}, "keys must be strings"),
        ({"any": {"source": "a"}}, r"when\['any'\]: expected a non-empty list"),
        ({"any": []}, "non-empty list"),
        ({"any": [{}]}, "always match"),
        ({"any": [{"source": {"bad": 1}}]}, r"when\['any'\]\[0\]\['source'\]: unknown operator 'bad'"),
        ({"description": {"contains": ["a"]}}, "contains"),
    ],
)
def test_invalid(when, message):
    with pytest.raises(ValueError, match=message):
        validate_when(when)


def _alert(**kw):
    kw.setdefault("observables", [("ip", "10.0.0.1"), ("ip", "203.0.113.9"), ("domain", "evil.example")])
    return Alert.build(**kw)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"source": "suricata"}, True),
        ({"source": ["wazuh", "suricata"]}, True),
        ({"source": {"ne": "suricata"}}, False),
        ({"severity": {"gte": "medium"}}, True),
        ({"severity": {"gt": "high"}}, False),
        ({"severity": {"lte": "HIGH"}}, True),
        ({"severity": "High"}, True),
        ({"title": {"matches": "(?i)port scan"}}, True),
        ({"title": {"contains": "Scan"}}, True),
        ({"tags": "recon"}, True),
        ({"tags": {"contains": "recon"}}, True),
        ({"tags": {"ne": "recon"}}, False),
        ({"observables.ip": "203.0.113.9"}, True),
        ({"observables.ip": {"matches": r"^10\."}}, True),
        ({"observables.url": {"exists": False}}, True),
        ({"observables.url": "x"}, False),
        ({"observables.url": {"ne": "x"}}, True),
        ({"raw.rule.level": {"gte": 10}}, True),
        ({"raw.rule.level": {"lt": 10}}, False),
        ({"raw.rule.level": "12"}, True),
        ({"raw.rule.id": {"gte": 5000}}, True),
        ({"raw.rule.id": {"matches": "^57"}}, True),
        ({"raw.rule.level": {"matches": "^1[0-5]$"}}, True),
        ({"raw.rule.groups.1": "attack"}, True),
        ({"raw.rule.groups.5": {"exists": True}}, False),
        ({"raw.rule.level.x": {"exists": True}}, False),
        ({"raw.name": {"gt": "alpha"}}, True),
        ({"raw.name": {"gt": 3}}, False),
        ({"description": {"exists": True}}, True),
        ({"severity": "Informational"}, False),
        ({"raw.rule.level": 12.0}, True),
        ({"raw.rule.groups": {"contains": "attack"}}, True),
        ({"raw.rule.groups": "attack"}, True),
        ({"raw.rule.missing": {"exists": False}}, True),
        ({"raw.rule.missing": {"eq": 1}}, False),
        ({"raw.flag": True}, True),
        ({"raw.flag": 1}, False),
        ({"raw.rule": {"exists": True}}, True),
        ({"any": [{"source": "wazuh"}, {"severity": "high"}]}, True),
        ({"any": [{"source": "wazuh"}, {"severity": "low"}]}, False),
        ({"source": "suricata", "any": [{"raw.rule.level": {"gt": 11}}]}, True),
    ],
)
def test_reference_evaluation(when, expected):
    alert = _alert(
        source="suricata",
        severity="high",
        title="Port Scan detected",
        tags=["recon", "network"],
        raw={"rule": {"level": 12, "id": "5712", "groups": ["web", "attack"]}, "flag": True, "name": "beta"},
    )
    assert evaluate(validate_when(when), alert) is expected


def test_informational_alias():
    assert validate_when({"severity": {"gte": "Informational"}}) == {"severity": {"gte": "info"}}
    assert evaluate({"severity": "info"}, Alert.build(severity="informational"))


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [(r"foo(?=bar)", "look-around"), (r"(?<!x)y", "look-around"), (r"(a)\1", "backreference"),
     (r"(?P<w>a)(?P=w)", "backreference"), (r"[\0-\7]", "octal")],
)
def test_regex_features_unsupported_by_scheduler(pattern, feature):
    with pytest.raises(ValueError, match=feature):
        validate_when({"title": {"matches": pattern}})


@pytest.mark.parametrize("pattern", [r"\(?=x", r"[(?=]", r"[]]\d", r"(?i)^a\d+\.b$", r"(?P<n>x)", r"\\1"])
def test_regex_features_false_positives(pattern):
    assert validate_when({"title": {"matches": pattern}}) == {"title": {"matches": pattern}}


def test_evaluate_accepts_dicts_and_none():
    assert evaluate(None, {"source": "x"})
    assert evaluate({"source": "x"}, {"source": "x", "severity": "low"})
