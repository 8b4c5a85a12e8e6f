"""examples/ml_backend's decision: when N new annotations have arrived, one training starts; none
starts while one runs, and what arrives meanwhile counts towards the next."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trainer():
    pytest.importorskip("standardwebhooks")
    spec = importlib.util.spec_from_file_location("example_trainer", ROOT / "examples/ml_backend/trainer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "examples" / "receiver"))


def created(project: int, n: int = 1) -> dict:
    if n == 1:
        return {"action": "ANNOTATION_CREATED", "project": {"id": project}}
    return {"action": "ANNOTATIONS_CREATED", "project": {"id": project}, "annotation": [{}] * n}


def test_every_n_per_project_and_never_two_at_once(trainer):
    started: list[tuple[int, int]] = []
    trigger = trainer.TrainAfterN(3, lambda p, c: started.append((p, c)))
    for _ in range(2):
        trigger.on_event("id", created(1))
    trigger.on_event("id", created(2))
    assert started == []
    trigger.on_event("id", created(1))
    assert started == [(1, 3)]
    trigger.on_event("id", created(1, 5))  # training runs: counted for the next
    assert started == [(1, 3)]
    trigger.finished(1)
    trigger.on_event("id", created(1))
    assert started == [(1, 3), (1, 6)]
    trigger.on_event("id", {"action": "TASKS_CREATED", "project": {"id": 2}})
    assert started == [(1, 3), (1, 6)]


def test_every_must_be_positive(trainer):
    with pytest.raises(ValueError):
        trainer.TrainAfterN(0, lambda p, c: None)
