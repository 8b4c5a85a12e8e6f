"""Opt-in: Label Studio's Python SDK, unchanged, manages webhooks through outbox's API.

Set OUTBOX_LS_SDK_PYTHON to a Python with label-studio-sdk installed (e.g. a Label Studio
virtualenv); the SDK is not a dependency of outbox.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SDK_PYTHON = os.environ.get("OUTBOX_LS_SDK_PYTHON")

pytestmark = pytest.mark.skipif(not SDK_PYTHON, reason="OUTBOX_LS_SDK_PYTHON is not set")


def test_label_studio_sdk_works_unchanged(api):
    assert SDK_PYTHON is not None
    script = Path(__file__).with_name("ls_sdk_client.py")
    result = subprocess.run(
        [SDK_PYTHON, str(script), api.url, str(api.token)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(seen["info"]) == 12
    assert seen["created"] == {"project": 1, "actions": ["TASKS_CREATED"], "organization": 1}
    assert len(seen["listed"]) == 1 and seen["got_headers"] == {"X-Token": "t"}
    assert seen["updated"] == {
        "url": "http://127.0.0.1:9/other",
        "is_active": False,
        "actions": ["TASKS_CREATED"],
    }
    assert seen["after_delete"] == 404 and seen["bad_url"] == [400, ["url"]]
