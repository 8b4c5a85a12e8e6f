"""The installed ``outbox`` console script, run as a user runs it: in a subprocess, with none of
the caller's outbox configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def executable() -> str:
    return shutil.which("outbox") or str(Path(sys.executable).parent / "outbox")


def environment(env: dict[str, str] | None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_") and k != "DATABASE_URL"}
    return {**clean, **(env or {})}


def outbox(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [executable(), *args], env=environment(env), capture_output=True, text=True, timeout=timeout
    )


def outbox_each(
    commands: Sequence[Sequence[str]], env: dict[str, str] | None = None, timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Each command in a process of its own, all at once, answers in the order given: for checks
    of independent commands (most of a command's time is Python starting, ~1 s here, so one after
    the other made such tests the suite's slowest)."""
    variables, deadline = environment(env), time.monotonic() + timeout
    started = [
        subprocess.Popen(
            [executable(), *args],
            env=variables,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    try:
        answers = []
        for process in started:
            out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            answers.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return answers
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
