"""The suite's copy of Label Studio's example payloads is the one shared with the team."""

from __future__ import annotations

import pytest

from tests.support.examples import EXAMPLES, SHARED_EXAMPLES


@pytest.mark.skipif(not SHARED_EXAMPLES.is_dir(), reason="shared/label-studio/examples is not beside this clone")
def test_copy_matches_the_shared_examples():
    ours = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.json")}
    shared = {p.name: p.read_bytes() for p in SHARED_EXAMPLES.glob("*.json")}
    assert ours == shared
