"""@playbook triggers (alert, manual, schedule:<cron>), tenants and enabled."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from fakehost import FakeHost, Harness, make_bundle, new_hash
from tocsin import Alert, CronSchedule, playbook
from tocsin._cron import parse_cron


def _pb(**kwargs):
    @playbook(**kwargs)
    async def pb(alert, run):
        return None

    return pb


@pytest.mark.parametrize(
    ("trigger", "normalized"),
    [
        ("schedule:*/15 * * * *", "schedule:*/15 * * * *"),
        ("schedule:0 6 * * 1-5", "schedule:0 6 * * 1-5"),
        ("schedule:0,30 8-18/2 1,15 * 0", "schedule:0,30 8-18/2 1,15 * 0"),
        ("schedule:0 0 * * 7", "schedule:0 0 * * 7"),
        ("schedule:  5  4 * *   *  ", "schedule:5 4 * * *"),
        ("schedule:0-59/59 0 29 2 *", "schedule:0-59/59 0 29 2 *"),
    ],
)
def test_valid_schedules(trigger, normalized):
    pb = _pb(trigger=trigger)
    assert pb.trigger == normalized
    assert isinstance(pb.schedule, CronSchedule)
    assert pb.describe()["trigger"] == normalized
    assert pb.when is None and not pb.matches(Alert.build())


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty cron expression; expected 5 fields"),
        ("* * * *", "has 4 field\\(s\\); expected 5: minute hour day-of-month month day-of-week"),
        ("* * * * * *", "has 6 field\\(s\\); expected 5"),
        ("60 * * * *", "invalid cron minute field '60': value 60 is out of range 0-59"),
        ("* 24 * * *", "invalid cron hour field '24': value 24 is out of range 0-23"),
        ("* * 0 * *", "invalid cron day-of-month field '0': value 0 is out of range 1-31"),
        ("* * * 13 *", "invalid cron month field '13': value 13 is out of range 1-12"),
        ("* * * * 8", "invalid cron day-of-week field '8': value 8 is out of range 0-7"),
        ("* * * * mon", "invalid cron day-of-week field 'mon': names such as 'mon' are not supported"),
        ("* * * jan *", "invalid cron month field 'jan': names such as 'jan' are not supported"),
        ("*/0 * * * *", "invalid cron minute field '\\*/0': step must be at least 1"),
        ("*/60 * * * *", "step 60 is larger than the field's range 0-59"),
        ("5/10 * * * *", "a step needs '\\*' or a range before it"),
        ("10-5 * * * *", "range '10-5' is reversed"),
        ("1,,2 * * * *", "empty list item"),
        ("? * * * *", "'\\?' is not a number"),
        ("*/x * * * *", "step 'x' is not a positive number"),
        ("1-2-3 * * * *", "'2-3' is not a number"),
        ("@daily", "cron macros such as '@daily' are not supported"),
        ("0 0 30 2 *", "never fires: day-of-month '30' does not occur in month\\(s\\) 2"),
        ("0 0 31 4,6 *", "does not occur in month\\(s\\) 4,6"),
    ],
)
def test_invalid_schedules_have_precise_errors(expression, message):
    with pytest.raises(ValueError, match=message) as info:
        _pb(trigger=f"schedule:{expression}")
    assert str(info.value).startswith(f"playbook trigger 'schedule:{expression}': ")


def test_other_triggers():
    assert _pb().trigger == "alert" and _pb(trigger="manual").trigger == "manual"
    for bad in ("cron", "schedule", "Schedule:* * * * *", "", None, 3):
        with pytest.raises(ValueError, match="expected 'alert', 'manual' or 'schedule:<cron>'"):
            _pb(trigger=bad)
    with pytest.raises(ValueError, match="trigger='schedule:...' cannot have a 'when' condition"):
        _pb(trigger="schedule:0 * * * *", when={"source": "x"})


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_cron_reference_evaluation():
    weekdays = parse_cron("0 6 * * 1-5")
    assert weekdays.next_after(_utc(2026, 1, 2, 7, 0)) == _utc(2026, 1, 5, 6, 0)  # Friday -> Monday
    assert weekdays.next_after(_utc(2026, 1, 5, 5, 59, 59)) == _utc(2026, 1, 5, 6, 0)
    assert weekdays.matches(_utc(2026, 1, 5, 6, 0, 30)) and not weekdays.matches(_utc(2026, 1, 4, 6, 0))
    quarter = parse_cron("*/15 * * * *")
    assert quarter.next_after(_utc(2026, 3, 1, 10, 7)) == _utc(2026, 3, 1, 10, 15)
    assert quarter.next_after(_utc(2026, 12, 31, 23, 50)) == _utc(2027, 1, 1, 0, 0)
    # Sunday is 0 and 7; naive datetimes are UTC.
    assert parse_cron("0 0 * * 7").matches(datetime(2026, 1, 4)) and parse_cron("0 0 * * 0").weekdays == {0}
    # Both day fields restricted: either matches (classic cron).
    either = parse_cron("0 0 13 * 5")
    assert either.matches(_utc(2026, 1, 13)) and either.matches(_utc(2026, 1, 2)) and not either.matches(_utc(2026, 1, 3))
    # Only day-of-month restricted: both must match.
    assert parse_cron("0 0 29 2 *").next_after(_utc(2025, 3, 1)) == _utc(2028, 2, 29)
    assert parse_cron("0 12 1 1 *").next_after(_utc(2026, 1, 1, 12, 0)) == _utc(2027, 1, 1, 12, 0)


def test_tenants_and_enabled():
    pb = _pb()
    assert (pb.tenants, pb.enabled) == ("*", True)
    pb = _pb(tenants=["acme", "beta-2", "acme"], enabled=False)
    assert (pb.tenants, pb.enabled) == (["acme", "beta-2"], False)
    assert pb.describe()["tenants"] == ["acme", "beta-2"] and pb.describe()["enabled"] is False
    assert _pb(tenants=("x" * 63,)).tenants == ["x" * 63]


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ("acme", "use '\\*' for every tenant or a list of tenant ids, e.g. tenants=\\['acme'\\]"),
        ([], "the list is empty"),
        (["Acme"], "invalid tenant id 'Acme'"),
        (["-acme"], "invalid tenant id '-acme'"),
        (["a" * 64], "invalid tenant id"),
        (["ac me"], "invalid tenant id 'ac me'"),
        ([1], "invalid tenant id 1"),
        ({"acme": True}, "must be '\\*' or a list of tenant ids"),
        (None, "must be '\\*' or a list of tenant ids"),
    ],
)
def test_invalid_tenants(tenants, message):
    with pytest.raises(ValueError, match=message):
        _pb(tenants=tenants)


def test_invalid_enabled():
    with pytest.raises(ValueError, match="enabled must be a bool"):
        _pb(enabled="yes")


def test_inspect_exports_triggers_tenants_and_enabled(tmp_path):
    bundle_dir = make_bundle(tmp_path, {"pbs.py": '''
        from tocsin import playbook

        @playbook(trigger="schedule:*/5 * * * *", tenants=["acme", "globex"], enabled=False)
        async def nightly(alert, run):
            return None

        @playbook(when={"source": "wazuh"})
        async def on_alert(alert, run):
            return None
    '''})
    host = FakeHost()

    async def main():
        async with Harness(host) as h:
            return await h.inspect(bundle_dir, new_hash())

    playbooks, error = asyncio.run(main())
    assert error is None
    nightly, on_alert = playbooks
    assert nightly == {
        "name": "nightly", "module": "pbs", "function": "nightly", "trigger": "schedule:*/5 * * * *", "when": None,
        "tenants": ["acme", "globex"], "enabled": False, "priority": "normal", "timeout_s": 300.0,
        "file": "pbs.py", "line": 3,
    }
    assert (on_alert["trigger"], on_alert["tenants"], on_alert["enabled"]) == ("alert", "*", True)
