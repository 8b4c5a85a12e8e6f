"""The console in a wheel: a non-editable install must serve it, so its templates and static
files must be in the wheel (hatchling takes the package's files; nothing is built at install)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_console(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("outbox-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    console = {name.removeprefix("outbox/console/") for name in names if name.startswith("outbox/console/")}
    templates = {p.name for p in (ROOT / "outbox/console/templates").iterdir()}
    static = {p.name for p in (ROOT / "outbox/console/static").iterdir()}
    assert {f"templates/{t}" for t in templates} <= console
    assert {f"static/{s}" for s in static} <= console
    assert "static/htmx.min.js" in console and "templates/base.html" in console
