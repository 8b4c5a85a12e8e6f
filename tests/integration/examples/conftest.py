"""Fixtures that run the examples in examples/ as a user would: ``python examples/…/x.py`` in a
process of its own on 127.0.0.1, its stdout collected line by line; stopped by its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.signing import generate_secret
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Example:
    url: str
    secret: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str) -> None:
        wait_until(
            lambda: any(text in line for line in self.lines),
            timeout=15,
            what=text,
            last=lambda: "\n".join(self.lines),
        )


@pytest.fixture
def run_example() -> Iterator[Callable[..., Example]]:
    started: list[Example] = []

    def run(script: str, **env: str) -> Example:
        secret = generate_secret()
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / script)],
            env={
                **os.environ,
                "RECEIVER_SECRET": secret,
                "RECEIVER_HOST": "127.0.0.1",
                "RECEIVER_PORT": "0",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        wait_until(
            lambda: any(line.startswith("listening on ") for line in lines) or process.poll() is not None,
            timeout=15,
            what=f"{script} to listen",
            last=lambda: "\n".join(lines),
        )
        assert process.poll() is None, "\n".join(lines)
        url = next(line for line in lines if line.startswith("listening on ")).removeprefix("listening on ")
        example = Example(url, secret, process, lines)
        started.append(example)
        return example

    yield run
    for example in started:
        example.process.terminate()
        try:
            example.process.wait(10)
        except subprocess.TimeoutExpired:
            example.process.kill()
            example.process.wait()
