"""The words for states written once (outbox/admin/states.py), and the copies kept equal."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from uuid import UUID

from outbox.admin import models, states
from relay.deliveries import message_id

ROOT = Path(__file__).resolve().parents[2]


def test_the_capture_triggers_count_a_relay_alive_for_the_admin_sides_window():
    """outbox.wake() (SQL) decides whether any relay waits; the admin side whether any is alive:
    one window."""
    wake = (ROOT / "sql" / "0005_wake_plpgsql.sql").read_text()
    [window] = re.findall(r"heartbeat_at > now\(\) - interval '(\d+) (minute|second)s?'", wake)
    seconds = int(window[0]) * (60 if window[1] == "minute" else 1)
    assert seconds == states.RELAY_ALIVE_SECONDS


def test_the_api_model_lists_every_status_the_sql_can_give():
    assert typing.get_args(models.WebhookStatus) == states.WEBHOOK_STATUSES
    compiled = str(states.webhook_status().compile(compile_kwargs={"literal_binds": True}))
    assert set(re.findall(r"'(\w+)'", compiled)) == set(states.WEBHOOK_STATUSES)


def test_the_webhook_id_has_the_standard_webhooks_form():
    assert message_id(UUID(int=255)) == "msg_" + "0" * 30 + "ff"
