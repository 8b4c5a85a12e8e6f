"""``outbox doctor``: is this installation healthy, and if not, what is wrong and how to fix it.

Each check reads what it needs (one query of ``sql/doctor.sql``) and a pure function judges it into
a ``Finding``: its name, whether it is healthy, what was found, and what to do when it is not.
``examine`` runs them all; the report is healthy when every finding is. A database that cannot be
reached is one finding and the end of the examination; so is one where outbox is not installed.

Checks, in order: database, migrations, triggers, relays, backlog, dead_deliveries,
disabled_webhooks, notification_queue, long_transactions, webhook_projects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from outbox import db, migrations, sql
from outbox.admin.states import RELAY_ALIVE_SECONDS

Row = dict[str, Any]
# `create trigger <name> after … on <schema>.<table>` in capture.sql: the triggers there should be
_TRIGGER = re.compile(r"^create trigger (\w+)\s.*?\bon\s+(\w+)\.(\w+)", re.I | re.M | re.S)
_ENABLED = {"O": "enabled", "D": "disabled", "R": "enabled only in replica sessions", "A": "always enabled"}


@dataclass(frozen=True)
class Limits:
    """Where healthy ends (seconds, and a fraction of the NOTIFY queue)."""

    unrouted: float = 60.0  # oldest captured change not yet routed into events
    overdue: float = 300.0  # a delivery due this long and still not sent
    long_transaction: float = 300.0
    notification_queue: float = 0.5


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        """The finding in one line, for people."""
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text if self.fix is None else f"{text}; fix: {self.fix}"


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def text(self) -> str:
        return "\n".join(f.line() for f in self.findings)

    def json(self) -> str:
        """``{"ok": bool, "checks": [{"name", "ok", "detail", "fix"}, …]}`` (docs/operations.md)."""
        return json.dumps({"ok": self.ok, "checks": [asdict(f) for f in self.findings]}, indent=2)


# -- judgements (pure) -------------------------------------------------------------------------


def expected_triggers(capture_sql: str) -> list[tuple[str, str, str]]:
    """(schema, table, trigger) of every trigger capture.sql creates."""
    return [(m[2], m[3], m[1]) for m in _TRIGGER.finditer(capture_sql)]


def judge_migrations(states: Sequence[migrations.Status]) -> Finding:
    changed = [s.migration.name for s in states if s.state == "changed"]
    pending = [s.migration.name for s in states if s.state == "pending"]
    if changed:
        return Finding(
            "migrations",
            False,
            f"applied migration(s) {', '.join(changed)} differ from the files of this version",
            "restore the original files (an edited migration is never re-applied); "
            "changes belong in a new numbered migration",
        )
    if pending:
        return Finding("migrations", False, f"pending: {', '.join(pending)}", "run `outbox migrate`")
    return Finding("migrations", True, f"current ({len(states)} applied)")


def judge_triggers(expected: Sequence[tuple[str, str, str]], found: Sequence[Row]) -> Finding:
    state = {(r["schema"], r["table_name"], r["name"]): r["enabled"] for r in found}
    missing = [
        f"{name} on {schema}.{table}"
        for schema, table, name in expected
        if (schema, table, name) not in state
    ]
    off = [
        (schema, table, name, state[(schema, table, name)])
        for schema, table, name in expected
        if state.get((schema, table, name), "O") not in ("O", "A")
    ]
    problems = [
        f"{name} on {schema}.{table} is {_ENABLED.get(flag, flag)}" for schema, table, name, flag in off
    ]
    fixes = [f"alter table {schema}.{table} enable trigger {name}" for schema, table, name, _ in off]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
        fixes.append("`outbox uninstall` then `outbox migrate` (re-creates every trigger)")
    if problems:
        return Finding("triggers", False, "; ".join(problems), "; ".join(fixes))
    return Finding("triggers", True, f"all {len(expected)} capture triggers present and enabled")


def judge_relays(relays: Sequence[Row], unrouted: Row, limits: Limits) -> Finding:
    alive = [r for r in relays if r["silent_seconds"] < RELAY_ALIVE_SECONDS]
    stale = [r for r in relays if r["silent_seconds"] >= RELAY_ALIVE_SECONDS]
    lag = f"{unrouted['count']} change(s) not routed yet, the oldest {unrouted['oldest_seconds']:.1f} s old"
    names = ", ".join(f"{r['hostname']} pid {r['pid']}" for r in alive)
    if stale:
        gone = ", ".join(
            f"{r['hostname']} pid {r['pid']} (silent {r['silent_seconds']:.0f} s)" for r in stale
        )
        living = f"{len(alive)} alive" + (f" ({names})" if alive else "")
        return Finding(
            "relays",
            False,
            f"{living}; stopped without unregistering: {gone}; {lag}",
            "nothing is lost (their leases expire and others send those deliveries); find out why they"
            " stopped, and start relays again: `outbox relay` (the rows are pruned after 10 minutes)",
        )
    if not alive:
        return Finding(
            "relays", False, f"no relay is alive; {lag}", "start one: `outbox relay` (or `outbox up`)"
        )
    if unrouted["count"] and unrouted["oldest_seconds"] > limits.unrouted:
        return Finding(
            "relays",
            False,
            f"{len(alive)} alive ({names}) but behind: {lag}",
            "look at the relays' logs for database errors; start more relays if they are busy",
        )
    return Finding("relays", True, f"{len(alive)} alive ({names}); {lag}")


def judge_backlog(due: Row, limits: Limits) -> Finding:
    if not due["count"]:
        return Finding("backlog", True, "no delivery is waiting to be sent")
    detail = (
        f"{due['count']} delivery(ies) due, due for {due['overdue_seconds']:.1f} s at most"
        f" (the oldest made {due['oldest_seconds']:.0f} s ago)"
    )
    if due["overdue_seconds"] > limits.overdue:
        return Finding(
            "backlog",
            False,
            detail,
            "relays are not keeping up or not running: see `relays`; raise OUTBOX_CONCURRENCY or"
            " start more relays",
        )
    return Finding("backlog", True, detail)


def judge_dead(dead: Row) -> Finding:
    if not dead["count"]:
        return Finding("dead_deliveries", True, "none")
    return Finding(
        "dead_deliveries",
        False,
        f"{dead['count']} dead delivery(ies) on {dead['webhooks']} webhook(s)",
        f"see why: `outbox deliveries list --state dead`; send them again once the receiver works:"
        f" `outbox deliveries recover {dead['first_webhook']} --since 7d`",
    )


def judge_disabled(webhooks: Sequence[Row]) -> Finding:
    if not webhooks:
        return Finding("disabled_webhooks", True, "none")
    listed = "; ".join(f"webhook {w['id']}: {w['reason']}" for w in webhooks[:5])
    more = f" and {len(webhooks) - 5} more" if len(webhooks) > 5 else ""
    return Finding(
        "disabled_webhooks",
        False,
        f"outbox disabled {len(webhooks)} webhook(s): {listed}{more}",
        f"fix the receiver, then `outbox webhooks resume {webhooks[0]['id']}`",
    )


def judge_notification_queue(usage: float, limits: Limits) -> Finding:
    detail = f"{usage:.1%} of PostgreSQL's NOTIFY queue in use"
    if usage > limits.notification_queue:
        return Finding(
            "notification_queue",
            False,
            detail,
            "a session that LISTENs is stuck in a long transaction and does not consume (see"
            " `long_transactions`); when the queue is full every notifying commit fails",
        )
    return Finding("notification_queue", True, detail)


def judge_long_transactions(sessions: Sequence[Row], limits: Limits) -> Finding:
    if not sessions:
        return Finding("long_transactions", True, f"none open longer than {limits.long_transaction:.0f} s")
    listed = "; ".join(
        f"pid {s['pid']} ({s['role']}, {s['application_name'] or 'no application name'}, {s['state']})"
        f" open {s['seconds']:.0f} s"
        for s in sessions
    )
    return Finding(
        "long_transactions",
        False,
        f"transactions holding back cleanup (VACUUM): {listed}",
        f"end them (commit, or `select pg_terminate_backend({sessions[0]['pid']})`)",
    )


def judge_webhook_projects(webhooks: Sequence[Row]) -> Finding:
    if not webhooks:
        return Finding("webhook_projects", True, "every project webhook's project exists")
    listed = ", ".join(f"webhook {w['id']} (project {w['project_id']})" for w in webhooks[:10])
    return Finding(
        "webhook_projects",
        False,
        f"the project of {len(webhooks)} webhook(s) no longer exists: {listed}",
        f"they will never receive anything again: `outbox webhooks remove {webhooks[0]['id']}`",
    )


# -- the examination (I/O) ---------------------------------------------------------------------


def _query(name: str) -> str:
    return sql.query(name, "doctor.sql")


def _one(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None) -> Row:
    row = conn.execute(_query(name), params).fetchone()
    assert row is not None  # aggregates always return a row
    return dict(row)


def _all(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None) -> list[Row]:
    return [dict(r) for r in conn.execute(_query(name), params).fetchall()]


def _checks(limits: Limits) -> list[tuple[str, Callable[[psycopg.Connection[Any]], Finding]]]:
    capture = expected_triggers(sql.read("capture.sql"))
    return [
        ("migrations", lambda c: judge_migrations(migrations.status(c))),
        ("triggers", lambda c: judge_triggers(capture, _all(c, "capture_triggers"))),
        ("relays", lambda c: judge_relays(_all(c, "relays"), _one(c, "unrouted_changes"), limits)),
        ("backlog", lambda c: judge_backlog(_one(c, "due_deliveries"), limits)),
        ("dead_deliveries", lambda c: judge_dead(_one(c, "dead_deliveries"))),
        ("disabled_webhooks", lambda c: judge_disabled(_all(c, "disabled_webhooks"))),
        (
            "notification_queue",
            lambda c: judge_notification_queue(_one(c, "notification_queue")["usage"], limits),
        ),
        (
            "long_transactions",
            lambda c: judge_long_transactions(
                _all(c, "long_transactions", {"seconds": limits.long_transaction}), limits
            ),
        ),
        ("webhook_projects", lambda c: judge_webhook_projects(_all(c, "webhooks_without_project"))),
    ]


def _reason(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def examine(url: str, limits: Limits | None = None) -> Report:
    """Every check on the database of ``url``; never raises for what it finds (a check that
    cannot run is a failed finding saying why)."""
    limits = limits or Limits()
    try:
        conn = db.connect_sync(url, autocommit=True, application_name="outbox-doctor")
    except psycopg.Error as exc:
        return Report(
            (
                Finding(
                    "database",
                    False,
                    f"cannot connect: {_reason(exc)}",
                    "check DATABASE_URL and that the server runs",
                ),
            )
        )
    findings = []
    with conn:
        version = _one(conn, "server_version")["version"]
        findings.append(Finding("database", True, f"reachable (PostgreSQL {version})"))
        if not _one(conn, "outbox_installed")["installed"]:
            findings.append(Finding("migrations", False, "outbox is not installed", "run `outbox migrate`"))
            return Report(tuple(findings))
        for name, check in _checks(limits):
            try:
                findings.append(check(conn))
            except psycopg.Error as exc:
                findings.append(Finding(name, False, f"could not check: {_reason(exc)}", None))
    return Report(tuple(findings))
