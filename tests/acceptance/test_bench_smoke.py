"""The benchmark suite still runs: ``python -m bench --quick`` end to end, every measure reported.

Speed is never asserted here (benchmarks print numbers; see docs/performance.md): this only keeps
bench/ from rotting as the code it measures changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEASURES = {"write_path", "bulk_import", "throughput", "latency", "fanout", "memory", "scale_out"}


@pytest.mark.timeout(300)
def test_bench_quick_runs_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "WEBHOOK_"))}
    args = [sys.executable, "-m", "bench", "--quick", "--json", str(out)]
    # the same server as the rest of the suite when one is given; else the bench's own embedded one
    if os.environ.get("OUTBOX_TEST_DATABASE_URL"):
        args += ["--database-url", os.environ["OUTBOX_TEST_DATABASE_URL"]]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    assert set(document["measures"]) == MEASURES
    for name, measure in document["measures"].items():
        assert "error" not in measure, f"{name}: {measure.get('error')}"
        assert measure["figures"], name
        assert all(figure["samples"] for figure in measure["figures"]), name
