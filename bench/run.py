"""The entry point: start (or attach to) PostgreSQL and the receiver, run the measures, print the
table, write the JSON. ``python -m bench --help``; ``python bench/run.py`` works too."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    bulk_import,
    fanout,
    harness,
    latency,
    memory,
    report,
    scale_out,
    throughput,
    write_path,
)
from bench.harness import Context, MeasureResult
from bench.receiver import ReceiverProcess

MEASURES: dict[str, Callable[[Context], MeasureResult]] = {
    write_path.NAME: write_path.run,
    bulk_import.NAME: bulk_import.run,
    throughput.NAME: throughput.run,
    latency.NAME: latency.run,
    fanout.NAME: fanout.run,
    memory.NAME: memory.run,
    scale_out.NAME: scale_out.run,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one repetition: a smoke run of seconds (numbers mean nothing)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(MEASURES),
        metavar="NAME",
        help=f"run only this measure (repeatable): {', '.join(MEASURES)}",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server on which the bench may create databases "
        "(default: an embedded server in a temporary directory)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default: {DEFAULT_JSON}")
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions per measure (default 3, --quick 1)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy profile (raw collapsed stacks) of every relay into DIR",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--schema",
        choices=harness.SCHEMAS,
        default="sandbox",
        help="Label Studio's tables: the project's fixture (sandbox), or Label Studio 1.23.2's real DDL",
    )
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.profile is not None and not shutil.which("py-spy"):
        # (it used to record nothing, silently)
        print("python -m bench: --profile needs py-spy on PATH (pip install py-spy)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    repeat = args.repeat or (1 if args.quick else 3)
    names = args.only or list(MEASURES)
    started = time.monotonic()
    results: list[MeasureResult] = []
    failures: dict[str, str] = {}
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(
            f"[bench] warning: load average {load:.1f} on {os.cpu_count()} cores before starting;"
            " other work on this machine will show in the numbers",
            file=sys.stderr,
        )
    with harness.server(args.database_url) as srv, ReceiverProcess() as receiver:
        settings = srv.settings()
        templates = harness.make_templates(srv, args.schema)
        ctx = Context(srv, templates, receiver, args.quick, repeat, args.profile, schema=args.schema)
        for name in names:
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            measure_started = time.monotonic()
            load_before = os.getloadavg()
            try:
                result = MEASURES[name](ctx)
            except Exception as exc:  # noqa: BLE001 - one broken measure must not hide the others
                logging.getLogger("bench").exception("measure %s failed", name)
                failures[name] = f"{type(exc).__name__}: {exc}"
                result = MeasureResult(name)
            result.seconds = time.monotonic() - measure_started
            # the machine may be shared: a busy neighbour shows here
            result.details["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
            print(f"[bench] {name} done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
            results.append(result)
    wall = time.monotonic() - started
    now = datetime.now(UTC)
    code = harness.source()
    version = (code["commit"] or "unknown")[:10] + (" + uncommitted changes" if code["changed"] else "")
    title = (
        f"outbox bench{' --quick' if args.quick else ''} · {version} · {now:%Y-%m-%d %H:%M} UTC · "
        f"PostgreSQL {settings.get('server_version', '?')} "
        f"({'embedded' if srv.embedded else 'given'}) · {args.schema} schema · wall {wall:.0f} s"
    )
    report.print_table(results, title)
    if args.markdown:
        print(report.markdown(results))
    document = {
        "date": now.isoformat(),
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "wall_seconds": wall,
        "load_average_at_start": load,
        "machine": harness.machine(),
        "source": code,
        "server": {"embedded": srv.embedded, "settings": settings},
        "schema": args.schema,
        "measures": {
            r.name: {
                "seconds": r.seconds,
                "figures": [f.as_json() for f in r.figures],
                "details": r.details,
                **({"error": failures[r.name]} if r.name in failures else {}),
            }
            for r in results
        },
    }
    report.write_json(args.json, document)
    print(f"[bench] results written to {args.json} (wall {wall:.1f} s)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
