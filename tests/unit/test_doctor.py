"""The doctor's judgements, without a database (issue 11 item 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outbox import doctor, sql
from outbox.doctor import Limits


def test_the_expected_triggers_are_read_from_capture_sql():
    expected = doctor.expected_triggers(sql.read("capture.sql"))
    assert ("public", "task", "outbox_insert") in expected
    assert ("public", "task", "outbox_detach") in expected
    # every trigger uninstall.sql drops is one capture.sql creates, and the other way round
    dropped = sql.read("uninstall.sql").count("drop trigger if exists")
    assert len(expected) == len(set(expected)) == dropped == 24


def test_a_relay_behind_on_routing_is_not_healthy():
    alive = [{"hostname": "h", "pid": 1, "silent_seconds": 1.0}]
    behind = doctor.judge_relays(alive, {"count": 3, "oldest_seconds": 61.0}, Limits())
    assert not behind.ok and "behind: 3 change(s)" in behind.detail
    assert doctor.judge_relays(alive, {"count": 3, "oldest_seconds": 59.0}, Limits()).ok


@given(usage=st.floats(min_value=0, max_value=1), limit=st.floats(min_value=0, max_value=1))
def test_the_notification_queue_is_healthy_up_to_its_limit(usage, limit):
    found = doctor.judge_notification_queue(usage, Limits(notification_queue=limit))
    assert found.ok == (usage <= limit)
    assert (found.fix is None) == found.ok


def test_every_finding_is_one_line():
    report = doctor.Report(
        (
            doctor.Finding("a", True, "fine"),
            doctor.Finding("b", False, "broken", "mend it"),
        )
    )
    assert report.text() == "ok    a: fine\nFAIL  b: broken; fix: mend it"
    assert not report.ok
