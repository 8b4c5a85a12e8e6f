"""Readiness and Prometheus metrics, read from the database on each request.

The API process shares no memory with the relays, so every number comes from outbox's tables at
scrape time: a snapshot is read with a few cheap statements (one pass over the hot delivery queue,
the attempt log of the last five minutes by its ``started_at`` index), and a prometheus_client
``Collector`` turns it into metric families. Counts are of what the tables hold, i.e. within
retention (OUTBOX_RETENTION), so they are gauges, not ever-growing counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox import migrations
from outbox import tables as t
from outbox.admin import states
from outbox.admin.states import RELAY_ALIVE_SECONDS

LATENCY_WINDOW_SECONDS = 300
# seconds; the relay's default timeout is 10 s, the largest allowed 300 s
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Latency:
    """Attempt durations of one outcome: cumulative counts per bucket bound, sum, count."""

    buckets: tuple[int, ...]
    total_seconds: float
    count: int


@dataclass(frozen=True)
class Snapshot:
    changes_pending: int = 0
    events: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    failing: int = 0
    queue_depth: int = 0
    oldest_pending_age: float = 0.0
    relays_alive: int = 0
    webhooks: dict[str, int] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)


async def snapshot(engine: AsyncEngine) -> Snapshot:
    """Everything the metrics show, read in one read-only transaction."""
    d, e, a, w, h = t.delivery, t.event, t.attempt, t.webhook, t.webhook_health
    pending = d.c.state == "pending"
    queue = select(
        func.count().filter(pending),
        func.count().filter(d.c.state == "delivered"),
        func.count().filter(d.c.state == "dead"),
        func.count().filter(states.failing()),
        func.count().filter(pending, d.c.next_attempt_at <= func.now()),
        func.coalesce(func.extract("epoch", func.now() - func.min(d.c.created_at).filter(pending)), 0),
    )
    status = states.webhook_status().label("status")
    success = and_(a.c.error_class.is_(None), a.c.status_code.between(200, 299))
    outcome = case((success, literal("success")), else_=literal("failure")).label("outcome")
    window = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, LATENCY_WINDOW_SECONDS)
    latency = (
        select(
            outcome,
            *(func.count().filter(a.c.duration_ms <= bound * 1000) for bound in LATENCY_BUCKETS),
            func.coalesce(func.sum(a.c.duration_ms), 0) / 1000.0,
            func.count(),
        )
        .where(a.c.started_at >= window)
        .group_by(outcome)
    )
    async with engine.connect() as conn:
        changes = (await conn.execute(select(func.count()).select_from(t.change))).scalar_one()
        events = (await conn.execute(select(e.c.action, func.count()).group_by(e.c.action))).all()
        row = (await conn.execute(queue)).one()
        relays = (
            await conn.execute(select(func.count()).select_from(t.relay).where(states.relay_alive()))
        ).scalar_one()
        webhooks = (
            await conn.execute(
                select(status, func.count())
                .select_from(w.outerjoin(h, h.c.webhook_id == w.c.id))
                .group_by(status)
            )
        ).all()
        durations = (await conn.execute(latency)).all()
        await conn.rollback()
    return Snapshot(
        changes_pending=changes,
        events={action: count for action, count in events},
        deliveries={"pending": row[0], "delivered": row[1], "dead": row[2]},
        failing=row[3],
        queue_depth=row[4],
        oldest_pending_age=float(row[5]),
        relays_alive=relays,
        webhooks={name: count for name, count in webhooks},
        latency={
            r[0]: Latency(tuple(r[1 : 1 + len(LATENCY_BUCKETS)]), float(r[-2]), r[-1]) for r in durations
        },
    )


class OutboxCollector(Collector):
    """Metric families from one snapshot (pure: no I/O in ``collect``)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        yield _gauge(
            "outbox_changes_pending",
            "Captured changes not yet routed into events.",
            s.changes_pending,
        )
        events = GaugeMetricFamily(
            "outbox_events",
            "Events routed, in the log (within retention), by action.",
            labels=["action"],
        )
        for action, count in sorted(s.events.items()):
            events.add_metric([action], count)
        yield events
        deliveries = GaugeMetricFamily(
            "outbox_deliveries",
            "Deliveries in the log (within retention) by state: pending, delivered or dead.",
            labels=["state"],
        )
        for state in ("pending", "delivered", "dead"):
            deliveries.add_metric([state], s.deliveries.get(state, 0))
        yield deliveries
        yield _gauge(
            "outbox_dead_deliveries",
            "Deliveries declared dead (redeliverable).",
            s.deliveries.get("dead", 0),
        )
        yield _gauge("outbox_deliveries_failing", "Pending deliveries whose last attempt failed.", s.failing)
        yield _gauge("outbox_queue_depth", "Pending deliveries due now.", s.queue_depth)
        yield _gauge(
            "outbox_oldest_pending_delivery_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            s.oldest_pending_age,
        )
        yield _gauge(
            "outbox_relays_alive",
            f"Relays with a heartbeat in the last {RELAY_ALIVE_SECONDS} seconds.",
            s.relays_alive,
        )
        webhooks = GaugeMetricFamily(
            "outbox_webhooks",
            "Webhooks by status: active, failing, paused, disabled.",
            labels=["status"],
        )
        for name in states.WEBHOOK_STATUSES:
            webhooks.add_metric([name], s.webhooks.get(name, 0))
        yield webhooks
        histogram = HistogramMetricFamily(
            "outbox_attempt_duration_seconds",
            f"Duration of delivery attempts started in the last {LATENCY_WINDOW_SECONDS} seconds, "
            "by outcome (success = 2xx).",
            labels=["outcome"],
        )
        for outcome in ("success", "failure"):
            lat = s.latency.get(outcome, Latency((0,) * len(LATENCY_BUCKETS), 0.0, 0))
            buckets = [(_bound(b), float(c)) for b, c in zip(LATENCY_BUCKETS, lat.buckets, strict=True)]
            buckets.append(("+Inf", float(lat.count)))
            histogram.add_metric([outcome], buckets, lat.total_seconds)
        yield histogram


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _bound(value: float) -> str:
    return repr(float(value))


def registry(snap: Snapshot) -> CollectorRegistry:
    """A registry holding only outbox's metrics for this snapshot."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(OutboxCollector(snap))
    return reg


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str
    migrations: str
    pending: tuple[str, ...] = ()
    relays: str = "unknown"


def _relays_state(alive: int, changes: bool, due: bool) -> tuple[bool, str]:
    """Whether the relays are up to the work queued, and what to say: work queued with no relay
    alive is not ready (nothing will be delivered); no relay and nothing queued is."""
    if alive:
        return True, f"alive: {alive}"
    queued = [what for what, there in (("captured changes", changes), ("due deliveries", due)) if there]
    if not queued:
        return True, "none alive, nothing queued"
    return False, f"none alive with {' and '.join(queued)} queued: start `outbox relay` (or `outbox up`)"


async def readiness(engine: AsyncEngine) -> Readiness:
    """Whether the database answers, every migration of this version is applied unchanged, and
    some relay is alive when there is work queued (captured changes, deliveries due on active
    webhooks)."""
    m, d, w = t.schema_migrations, t.delivery, t.webhook
    relays = select(func.count()).select_from(t.relay).where(states.relay_alive())
    due = (
        select(d.c.id)
        .join(w, w.c.id == d.c.webhook_id)
        .where(d.c.state == "pending", d.c.next_attempt_at <= func.now(), w.c.is_active)
        .exists()
    )
    work = select(select(t.change.c.id).exists(), due)
    try:
        async with engine.connect() as conn:
            installed = (
                await conn.execute(select(func.to_regclass("outbox.schema_migrations").is_not(None)))
            ).scalar_one()
            rows = (await conn.execute(select(m.c.name, m.c.checksum))).all() if installed else []
            applied = {name: checksum for name, checksum in rows}
            current = installed and not migrations.plan(migrations.load(), applied)
            # only an installed, current schema can be asked about relays
            alive_count = (await conn.execute(relays)).scalar_one() if current else 0
            changes, due_now = (await conn.execute(work)).one() if current else (False, False)
            await conn.rollback()
    except migrations.MigrationChanged:
        return Readiness(False, "ok", "changed: applied migrations differ from this version's files")
    except (OperationalError, DBAPIError, OSError) as exc:
        return Readiness(False, f"unreachable: {type(exc).__name__}", "unknown")
    if not current:
        names = tuple(p.name for p in migrations.plan(migrations.load(), applied))
        return Readiness(False, "ok", "pending: run `outbox migrate`", names)
    ok, relays_state = _relays_state(alive_count, bool(changes), bool(due_now))
    return Readiness(ok, "ok", "current", relays=relays_state)
