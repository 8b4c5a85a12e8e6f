"""The installed ``outbox`` console script, run as a user runs it: in a subprocess, with none of
the caller's outbox configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def outbox(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("outbox") or str(Path(sys.executable).parent / "outbox")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_") and k != "DATABASE_URL"}
    return subprocess.run(
        [executable, *args], env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
