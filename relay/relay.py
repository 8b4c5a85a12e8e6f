"""The relay daemon: wait → route → build → claim → send → record (docs/design.md §4-§7).

One pipeline task routes committed changes into events, builds payloads whose settle delay has
passed, and claims due deliveries, which it hands to send tasks; it never waits on HTTP. Send tasks
POST and push their results to a recorder, which writes them in batches. A listener turns NOTIFY
into wake-ups, and the pipeline declares itself waiting (so that the capture triggers notify) only
when it is about to sleep. Any number of relays can run against one database.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections import Counter, OrderedDict, deque
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import anyio
import psycopg
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from outbox import __version__, db
from outbox.config import Settings
from relay import store
from relay.deliveries import Claimed, Result, request_headers
from relay.payloads import action_only
from relay.schedule import decide, parse_retry_after
from relay.sender import AiohttpSender, Outcome, Request, Sender
from relay.urls import AddressPolicy, redact_url

log = logging.getLogger("outbox.relay")

USER_AGENT = f"outbox/{__version__}"
# Connection trouble (a restart, a network cut) and anything else the database refuses: the relay
# logs it, reconnects with backoff and carries on; it never exits for them.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
DATABASE_ERRORS = (psycopg.Error,)
ROUTE_LIMIT = 1000
BUILD_LIMIT = 200
RECORD_BATCH = 1000
LEASE_MARGIN = 30.0
HEARTBEAT_INTERVAL = 15.0
PRUNE_INTERVAL = 60.0
BODY_CACHE_BYTES = 64 * 1024 * 1024
# Above this many routed changes per second, Label Studio is writing hard: the relay then polls
# every BUSY_POLL seconds instead of asking for NOTIFY, whose commit-time lock would serialise
# those writes (measured: 8 writers fell to a third of their TPS when every commit notified).
BUSY_WRITES_PER_SECOND = 300
BUSY_POLL = 0.01


class _Database:
    """One connection that comes back by itself: capped exponential backoff with jitter."""

    def __init__(self, dsn: str, purpose: str, settings: Settings) -> None:
        self._dsn = dsn
        self._purpose = purpose
        self._settings = settings
        self._conn: store.Conn | None = None
        self._failures = 0

    async def get(self) -> store.Conn:
        while self._conn is None or self._conn.closed:
            if self._failures:
                delay = min(10.0, 0.1 * 2 ** (self._failures - 1)) * random.uniform(0.8, 1.2)
                await anyio.sleep(delay)
            try:
                self._conn = await db.connect(
                    self._dsn,
                    autocommit=True,
                    application_name=f"outbox-relay-{self._purpose}",
                    connect_timeout=self._settings.connect_timeout,
                )
            except CONNECTION_ERRORS as exc:
                self._failures += 1
                if self._failures in (1, 5) or self._failures % 20 == 0:
                    log.warning("database unreachable (%s): %s; retrying", self._purpose, _first_line(exc))
                continue
            if self._failures:
                log.info("database connection restored (%s)", self._purpose)
            self._failures = 0
        return self._conn

    async def failed(self, exc: BaseException) -> None:
        """Forget a connection that raised; the next ``get`` reconnects after a backoff."""
        if not isinstance(exc, CONNECTION_ERRORS):
            log.error("database error (%s), %s: %s", self._purpose, type(exc).__name__, _first_line(exc))
        elif self._failures == 0:
            log.warning("lost the database connection (%s): %s", self._purpose, _first_line(exc))
        self._failures += 1
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                await conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _BodyCache:
    """Recently built bodies, so that a fan-out fetches each payload once."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, key: tuple[int, int]) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        return body

    def put(self, key: tuple[int, int], body: bytes) -> None:
        if key in self._items:
            return
        self._items[key] = body
        self._bytes += len(body)
        while self._bytes > self._max and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)


class _WriteRate:
    """Changes routed over the last second."""

    def __init__(self) -> None:
        self._routed: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, changes: int, now: float) -> None:
        if changes:
            self._routed.append((now, changes))
            self._total += changes

    def busy(self, now: float) -> bool:
        while self._routed and self._routed[0][0] < now - 1.0:
            self._total -= self._routed.popleft()[1]
        return self._total >= BUSY_WRITES_PER_SECOND


class _Due:
    """When each step of the pipeline should run next (time.monotonic() seconds), and when the
    payloads and deliveries this relay routed become ready (after the settle delay)."""

    def __init__(self) -> None:
        self.route = self.build = self.claim = 0.0
        self._ready: deque[float] = deque()

    def all_now(self) -> None:
        self.route = self.build = self.claim = 0.0

    def ready(self, at: float, *, build: bool) -> None:
        """Something routed now becomes ready ``at`` (the settle delay is constant: in order);
        ``build``: some of it has a payload still to build."""
        self._ready.append(at)
        if build:
            self.build = min(self.build, at)
        self.claim = min(self.claim, at)

    def next_ready(self, now: float, poll_interval: float) -> float:
        """When to look again: the next ready time still ahead, else the next poll."""
        while self._ready and self._ready[0] <= now:
            self._ready.popleft()
        return self._ready[0] if self._ready else now + poll_interval


class Relay:
    """A relay process. ``run`` until ``stop`` (or cancellation)."""

    def __init__(
        self,
        dsn: str,
        settings: Settings,
        *,
        relay_id: UUID | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.id = relay_id or uuid4()
        self._dsn = dsn
        self._settings = settings
        self._sender = sender
        self._pipeline_db = _Database(dsn, "pipeline", settings)
        self._record_db = _Database(dsn, "recorder", settings)
        self._stopping = anyio.Event()
        self._wake = anyio.Event()
        self._recorded = anyio.Event()
        self._listening = False
        self._waiting = False
        self._inflight = 0
        # requests in flight per webhook: counted against max_concurrency with other relays' leases
        self._busy: Counter[int] = Counter()
        self._bodies = _BodyCache(BODY_CACHE_BYTES)
        self._rng = random.Random()
        self._due = _Due()
        self._writes = _WriteRate()
        self._claim_batch = max(1, settings.concurrency // 4)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; in-flight requests get ``shutdown_grace`` seconds, the rest is released."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        settings = self._settings
        sender = self._sender = self._sender or AiohttpSender(
            concurrency=settings.concurrency,
            connect_timeout=settings.connect_timeout,
            max_body_bytes=settings.max_body_bytes,
            policy=AddressPolicy(settings.block_private_networks, settings.https_only),
        )
        results_in, results_out = anyio.create_memory_object_stream[Result](math.inf)
        log.info(
            "relay %s starting (concurrency %d, poll every %.1fs, settle %d ms)",
            self.id,
            settings.concurrency,
            settings.poll_interval,
            settings.settle_ms,
        )
        try:
            async with anyio.create_task_group() as background:
                await self._register()
                background.start_soon(self._listen)
                background.start_soon(self._housekeeping)
                recorder_done = anyio.Event()
                background.start_soon(self._record, results_out, recorder_done)
                task_status.started()
                async with anyio.create_task_group() as sends, results_in:
                    await self._pipeline(sends, results_in)
                    await self._drain(sends)
                with anyio.move_on_after(max(5.0, settings.shutdown_grace)):
                    await recorder_done.wait()
                await self._release()
                background.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await sender.aclose()
                await self._pipeline_db.close()
                await self._record_db.close()
            log.info("relay %s stopped", self.id)

    # -- the pipeline ------------------------------------------------------------------------

    async def _pipeline(self, sends: TaskGroup, results: MemoryObjectSendStream[Result]) -> None:
        while not self._stopping.is_set():
            self._wake = anyio.Event()
            try:
                conn = await self._pipeline_db.get()
                worked = await self._cycle(conn, sends, results)
                if not worked:
                    await self._idle(conn)
            except DATABASE_ERRORS as exc:
                await self._pipeline_db.failed(exc)
                self._due.all_now()

    async def _cycle(
        self, conn: store.Conn, sends: TaskGroup, results: MemoryObjectSendStream[Result]
    ) -> bool:
        """One transaction over the steps that are due: route, build, claim. True when one found
        work. One transaction, because a new event with no settle delay is then sent after one
        commit instead of three."""
        settings = self._settings
        due, now = self._due, time.monotonic()
        free = settings.concurrency - self._inflight
        # Claim in batches: one freed place at a time would cost a claim per delivery.
        claiming = free >= self._claim_batch or (free > 0 and not self._inflight)
        if now < min(due.route, due.build, due.claim if claiming else math.inf):
            return False
        worked = False
        claim = store.Claim([], {})
        async with store.transaction(conn):
            if now >= due.route:
                report = await store.route_changes(
                    conn,
                    relay_id=self.id,
                    limit=ROUTE_LIMIT,
                    batch_size=settings.webhook_batch_size,
                    settle=timedelta(milliseconds=settings.settle_ms),
                    clear_waiting=self._waiting,
                    max_bytes=settings.max_body_bytes,
                    # no settle delay: build while routing, one statement and round trip fewer
                    build_rows=settings.webhook_batch_size if settings.settle_ms == 0 else 0,
                )
                for key, body in report.bodies.items():
                    self._bodies.put(key, body)
                # More changes may be queued behind a full batch; otherwise next poll or NOTIFY.
                due.route = now if report.changes else now + settings.poll_interval
                self._writes.add(report.changes, now)
                if report.changes:
                    self._waiting = False
                    if report.events:
                        due.ready(now + settings.settle_ms / 1000, build=report.unbuilt)
                    worked = True
            if now >= due.build:
                built, more = await store.build_payloads(
                    conn, limit=BUILD_LIMIT, max_rows=settings.webhook_batch_size
                )
                due.build = now if more else due.next_ready(now, settings.poll_interval)
                if built:
                    due.claim = now
                    worked = True
            if claiming and now >= due.claim and not self._stopping.is_set():
                claim = await store.claim_deliveries(
                    conn,
                    relay_id=self.id,
                    limit=free,
                    timeout=settings.webhook_timeout,
                    lease_margin=LEASE_MARGIN,
                    cached=self._bodies,
                    busy=self._busy,
                )
                due.claim = (
                    now if len(claim.deliveries) == free else due.next_ready(now, settings.poll_interval)
                )
            if not claim.deliveries:
                await store.without_flush(conn)  # nothing will be sent on the strength of it
        # committed: only now may requests go out
        self._dispatch(claim, sends, results)
        return worked or bool(claim.deliveries)

    def _dispatch(
        self, claim: store.Claim, sends: TaskGroup, results: MemoryObjectSendStream[Result]
    ) -> None:
        for delivery in claim.deliveries:
            key = (delivery.event_id, delivery.chunk)
            body = self._bodies.get(key) if delivery.send_payload else action_only(delivery.action)
            refused = claim.refused.get(key) if delivery.send_payload else None
            self._inflight += 1
            self._busy[delivery.webhook_id] += 1
            sends.start_soon(self._deliver, delivery, body, results, refused)

    async def _idle(self, conn: store.Conn) -> None:
        """Sleep until notified, a send finishes, something falls due, or the poll interval.

        Only a relay with nothing left to claim raises its waiting flag (one write, which makes the
        capture triggers NOTIFY): one that waits for free places is woken by its own sends, and
        one that routes many changes a second polls every BUSY_POLL instead.
        """
        due, now = self._due, time.monotonic()
        timeout = max(0.0, min(due.route, due.build, due.claim) - now)
        capacity_bound = self._settings.concurrency - self._inflight < self._claim_batch
        if self._writes.busy(now):
            # Label Studio is writing hard: poll briefly rather than make every commit NOTIFY
            due.route = min(due.route, now + BUSY_POLL)
            timeout = min(timeout, BUSY_POLL)
        elif self._listening and not self._waiting and not capacity_bound:
            idle = await store.set_waiting(conn, self.id)
            self._waiting = True
            if idle.has_changes:
                due.route = now
                return
            until = idle.seconds_until_due()
            if until is not None:
                due.build = min(due.build, now + until)
                due.claim = min(due.claim, now + until)
                timeout = min(timeout, until)
        with anyio.move_on_after(timeout):
            await self._wake.wait()

    # -- sending -----------------------------------------------------------------------------

    async def _deliver(
        self,
        delivery: Claimed,
        body: bytes | None,
        results: MemoryObjectSendStream[Result],
        refused: str | None = None,
    ) -> None:
        try:
            started_at = datetime.now(UTC)
            if refused is not None:  # a chunk too large to build: dead at once, never sent
                outcome = Outcome(None, "too_large", refused, "", 0.0)
                logged: dict[str, str] = {}
            elif body is None:
                outcome = Outcome(None, "payload_missing", "the payload body is missing", "", 0.0)
                logged = {}
            else:
                sender = self._sender
                assert sender is not None
                headers, logged = request_headers(delivery, body, int(time.time()), USER_AGENT)
                timeout = delivery.timeout or self._settings.webhook_timeout
                try:
                    outcome = await sender.send(Request(delivery.url, body, headers, timeout))
                except Exception as exc:  # a bug must cost one attempt, not the relay
                    log.exception("sending delivery %d failed unexpectedly", delivery.id)
                    outcome = Outcome(None, "internal", f"{type(exc).__name__} in the relay", "", 0.0)
            result = self._judge(delivery, outcome, started_at, logged)
            _log_result(result)
            results.send_nowait(result)
        finally:
            self._inflight -= 1
            self._busy[delivery.webhook_id] -= 1
            self._due.claim = 0.0  # a place is free, and a capped webhook may have more
            self._wake.set()

    def _judge(
        self, delivery: Claimed, outcome: Outcome, started_at: datetime, logged: dict[str, str]
    ) -> Result:
        schedule = delivery.retry_schedule or self._settings.retry_schedule
        decision = decide(
            status=outcome.status,
            error_class=outcome.error_class,
            attempts_made=delivery.attempt,
            schedule=schedule,
            jitter=self._settings.retry_jitter,
            rng=self._rng,
            retry_after=parse_retry_after(outcome.retry_after, started_at),
        )
        return Result(
            delivery,
            decision.state,
            decision.delay,
            started_at,
            outcome,
            logged,
            decision.disable_reason,
        )

    async def _drain(self, sends: TaskGroup) -> None:
        """Give in-flight requests ``shutdown_grace`` seconds, then cancel what is left."""
        with anyio.move_on_after(self._settings.shutdown_grace):
            while self._inflight:
                self._wake = anyio.Event()
                await self._wake.wait()
        if self._inflight:
            log.warning(
                "cancelling %d request(s) still in flight; their deliveries are released",
                self._inflight,
            )
        sends.cancel_scope.cancel()

    # -- recording ---------------------------------------------------------------------------

    async def _record(self, results: MemoryObjectReceiveStream[Result], done: anyio.Event) -> None:
        async with results:
            while True:
                try:
                    batch = [await results.receive()]
                except anyio.EndOfStream:
                    break
                while len(batch) < RECORD_BATCH:
                    try:
                        batch.append(results.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._write(batch)
                if any(r.state == "pending" for r in batch):
                    self._due.claim = 0.0  # a retry may be due at once
                self._wake.set()
        done.set()

    async def _write(self, batch: list[Result]) -> None:
        """Write one batch, retrying through database outages; the results stay in memory meanwhile."""
        while True:
            try:
                conn = await self._record_db.get()
                disabled = await store.record_results(
                    conn,
                    batch,
                    relay_id=self.id,
                    disable_after=self._settings.disable_after,
                    disable_after_attempts=self._settings.disable_after_attempts,
                )
            except DATABASE_ERRORS as exc:
                await self._record_db.failed(exc)
                continue
            for webhook in disabled:
                log.warning("webhook %d disabled: %s", webhook.webhook_id, webhook.reason)
            return

    # -- presence ----------------------------------------------------------------------------

    async def _register(self) -> None:
        while True:
            try:
                await store.register(await self._pipeline_db.get(), self.id)
                return
            except DATABASE_ERRORS as exc:
                await self._pipeline_db.failed(exc)

    async def _listen(self) -> None:
        """LISTEN on channel ``outbox``; every notification wakes the pipeline."""
        listener = _Database(self._dsn, "listener", self._settings)
        try:
            while True:
                try:
                    conn = await listener.get()
                    await conn.execute("listen outbox")
                    self._listening = True
                    self._due.all_now()  # catch up on anything committed while not listening
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._due.route = 0.0
                        self._wake.set()
                except DATABASE_ERRORS as exc:
                    self._listening = False
                    await listener.failed(exc)
        finally:
            self._listening = False
            await listener.close()

    async def _housekeeping(self) -> None:
        """Heartbeats, and retention: every relay prunes a little now and then, in small batches."""
        housekeeping = _Database(self._dsn, "housekeeping", self._settings)
        settings = self._settings
        interval = min(HEARTBEAT_INTERVAL, settings.poll_interval * 5)
        next_prune = time.monotonic() + self._rng.uniform(0, PRUNE_INTERVAL)
        try:
            while True:
                await anyio.sleep(interval)
                try:
                    conn = await housekeeping.get()
                    await store.heartbeat(conn, self.id)
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_INTERVAL
                        pruned = await store.prune(
                            conn,
                            retention=settings.retention,
                            dead_retention=settings.dead_retention,
                            max_batches=20,
                        )
                        if pruned.deliveries or pruned.events:
                            log.info(
                                "pruned %d deliveries and %d events past retention",
                                pruned.deliveries,
                                pruned.events,
                            )
                except DATABASE_ERRORS as exc:
                    await housekeeping.failed(exc)
        finally:
            await housekeeping.close()

    async def _release(self) -> None:
        """Hand unfinished deliveries back at once, instead of letting their leases expire."""
        with anyio.move_on_after(5.0, shield=True):
            try:
                conn = await self._pipeline_db.get()
                await store.release_leases(conn, self.id)
                await store.unregister(conn, self.id)
            except DATABASE_ERRORS as exc:
                log.warning("could not release leases (%s); they expire by themselves", _first_line(exc))


def _log_result(result: Result) -> None:
    level = logging.INFO if result.state == "delivered" else logging.WARNING
    if not log.isEnabledFor(level):
        return  # formatting costs more than the rest of a delivery's bookkeeping
    delivery, outcome = result.delivery, result.outcome
    where = f"webhook {delivery.webhook_id} ({redact_url(delivery.url)})"
    what = f"{delivery.action} event {delivery.event_id}" + (
        f" chunk {delivery.chunk}" if delivery.chunk else ""
    )
    took = f"{outcome.duration_ms:.1f} ms"
    if result.state == "delivered":
        log.info(
            "delivered %s to %s: HTTP %s in %s (attempt %d)",
            what,
            where,
            outcome.status,
            took,
            delivery.attempt,
        )
    elif result.state == "pending":
        log.warning(
            "attempt %d of %s to %s failed: %s; next attempt in %.1f s",
            delivery.attempt,
            what,
            where,
            outcome.error,
            result.delay or 0.0,
        )
    else:
        log.warning("%s to %s is dead after %d attempt(s): %s", what, where, delivery.attempt, outcome.error)
