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
from typing import Any
from uuid import UUID, uuid4

import anyio
import psycopg
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from outbox import __version__, db
from outbox.config import Settings
from relay import store
from relay.deliveries import FALLBACK_DELAY, Claimed, Result, request_headers, unrecordable
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
# On stop, the part of OUTBOX_SHUTDOWN_GRACE kept for recording results and releasing leases once
# the requests in flight are done or cut off (at most a quarter of it).
STOP_RESERVE = 1.0


class _Stopped(Exception):
    """The relay is stopping: a database wait gives up."""


# Errors that mean outbox's schema is missing here, or older than this relay.
NOT_INSTALLED_ERRORS = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
)


def _trouble(exc: BaseException) -> str:
    """What kind of trouble a database error is: a lost or refused connection, outbox not
    installed, or anything else (each is reported its own way)."""
    if isinstance(exc, CONNECTION_ERRORS):
        return "connection"
    if isinstance(exc, NOT_INSTALLED_ERRORS):
        return "not installed"
    return "error"


def _backoff(failures: int) -> float:
    return min(10.0, 0.1 * 2.0 ** min(failures - 1, 16)) * random.uniform(0.8, 1.2)


class _Database:
    """One connection that comes back by itself: capped exponential backoff with jitter.

    The backoff grows with every failure, of connecting or of a statement, and resets only once a
    statement succeeded (``succeeded``): a database that accepts connections but refuses every
    statement is retried at the same pace as one that is down. Each kind of trouble is logged when
    it starts, then now and then, and its end once. ``interrupt`` makes every wait give up
    (``_Stopped``), for a relay that is stopping.
    """

    def __init__(self, dsn: str, purpose: str, settings: Settings) -> None:
        self._dsn = dsn
        self._purpose = purpose
        self._settings = settings
        self._conn: store.Conn | None = None
        self._failures = 0
        self._trouble: str | None = None
        self._backoff_due = False
        self._interrupted = False
        self._waiting: anyio.CancelScope | None = None

    def interrupt(self) -> None:
        """Give up the wait in progress and every later one."""
        self._interrupted = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def get(self) -> store.Conn:
        if self._backoff_due:  # the last statement failed: wait before the next one
            self._backoff_due = False
            await self._wait(anyio.sleep, _backoff(self._failures))
        while self._conn is None or self._conn.closed:
            if self._interrupted:
                raise _Stopped
            try:
                self._conn = await self._wait(
                    db.connect,
                    self._dsn,
                    autocommit=True,
                    application_name=f"outbox-relay-{self._purpose}",
                    connect_timeout=self._settings.connect_timeout,
                )
            except CONNECTION_ERRORS as exc:
                self._note("unreachable", _first_line(exc))
            except psycopg.ProgrammingError:
                # a URL psycopg cannot parse: its message quotes the URL, password and all
                self._note("malformed", "")
            else:
                break
            await self._wait(anyio.sleep, _backoff(self._failures))
        return self._conn

    async def _wait(self, wait: Any, *args: Any, **kwargs: Any) -> Any:
        """``await wait(*args, **kwargs)``, unless ``interrupt`` comes first."""
        if self._interrupted:
            raise _Stopped
        with anyio.CancelScope() as scope:
            self._waiting = scope
            try:
                return await wait(*args, **kwargs)
            finally:
                self._waiting = None
        raise _Stopped

    def _note(self, trouble: str, detail: str) -> None:
        """Count a failure; log it when this kind of trouble starts, and now and then after."""
        self._failures += 1
        new = trouble != self._trouble
        self._trouble = trouble
        if not (new or self._failures == 5 or self._failures % 20 == 0):
            return
        purpose = self._purpose
        if trouble == "unreachable":
            log.warning("database unreachable (%s): %s; retrying", purpose, detail)
        elif trouble == "malformed":
            log.error("the database URL cannot be parsed (%s): fix DATABASE_URL; retrying", purpose)
        elif trouble == "connection":
            log.warning("lost the database connection (%s): %s", purpose, detail)
        elif trouble == "not installed":
            log.error(
                "outbox is not installed in this database, or its schema is older than this relay:"
                " run `outbox migrate` (%s: %s); retrying",
                purpose,
                detail,
            )
        else:
            log.error("database error (%s), %s; retrying", purpose, detail)

    async def failed(self, exc: BaseException) -> None:
        """A statement raised: back off before the next one; forget the connection unless it is
        still usable (a connection that broke is reconnected)."""
        trouble = _trouble(exc)
        detail = _first_line(exc)
        self._note(trouble, detail if trouble != "error" else f"{type(exc).__name__}: {detail}")
        self._backoff_due = True
        conn = self._conn
        if (
            trouble == "connection"
            or conn is None
            or conn.broken
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            await self.close()

    def succeeded(self) -> None:
        """A statement succeeded: the backoff starts again from the beginning."""
        if not self._failures:
            return
        if self._trouble in ("unreachable", "connection"):
            log.info("database connection restored (%s)", self._purpose)
        elif self._trouble == "not installed":
            log.info("outbox is installed now (%s): working", self._purpose)
        else:
            log.info("database statements succeed again (%s)", self._purpose)
        self._failures = 0
        self._trouble = None

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                await conn.close()


def _refused(exc: BaseException) -> bool:
    """Whether writing results failed because of what they hold (a value the database or psycopg
    refuses), rather than the database's state (down, outbox missing, a deadlock): only the
    former is found by splitting the batch."""
    if isinstance(exc, psycopg.Error):
        return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    return True  # turning a value into a parameter failed (TypeError, UnicodeEncodeError, ...)


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
        self._listen_db = _Database(dsn, "listener", settings)
        self._housekeeping_db = _Database(dsn, "housekeeping", settings)
        self._stopping = anyio.Event()
        self._stop_deadline = math.inf  # time.monotonic() by which run() has returned
        self._unrecorded = 0  # results sent to the recorder and not written yet
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
        """Stop claiming; ``run`` returns within ``shutdown_grace`` seconds, whatever the database
        does: in-flight requests get most of it, then their results are recorded and the rest is
        released. Waits for the database give up at once (the recorder's at the deadline)."""
        if self._stopping.is_set():
            return
        self._stop_deadline = time.monotonic() + self._settings.shutdown_grace
        self._stopping.set()
        self._wake.set()
        for database in (self._pipeline_db, self._listen_db, self._housekeeping_db):
            database.interrupt()

    def _left(self, reserve: float = 0.0) -> float:
        """Seconds left until the stop deadline, less ``reserve``."""
        return max(0.0, self._stop_deadline - reserve - time.monotonic())

    async def _enforce_deadline(self, scope: anyio.CancelScope) -> None:
        """Once stopping, cancel whatever still runs at the stop deadline."""
        await self._stopping.wait()
        await anyio.sleep(self._left())
        log.warning(
            "stopping: OUTBOX_SHUTDOWN_GRACE (%.1f s) is over; %d result(s) not recorded and"
            " leases not released (they expire by themselves, and those deliveries are sent again)",
            self._settings.shutdown_grace,
            self._unrecorded,
        )
        scope.cancel()

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
            async with anyio.create_task_group() as shutdown:
                shutdown.start_soon(self._enforce_deadline, shutdown.cancel_scope)
                if await self._register():
                    async with anyio.create_task_group() as background:
                        background.start_soon(self._listen)
                        background.start_soon(self._housekeeping)
                        recorder_done = anyio.Event()
                        background.start_soon(self._record, results_out, recorder_done)
                        task_status.started()
                        async with anyio.create_task_group() as sends, results_in:
                            await self._pipeline(sends, results_in)
                            await self._drain(sends)
                        await recorder_done.wait()  # bounded by the stop deadline
                        await self._release()
                        background.cancel_scope.cancel()
                shutdown.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await sender.aclose()
                await self._pipeline_db.close()
                await self._record_db.close()
            log.info("relay %s stopped", self.id)

    # -- the pipeline ------------------------------------------------------------------------

    async def _pipeline(self, sends: TaskGroup, results: MemoryObjectSendStream[Result]) -> None:
        database = self._pipeline_db
        while not self._stopping.is_set():
            self._wake = anyio.Event()
            try:
                conn = await database.get()
                worked = await self._cycle(conn, sends, results)
                database.succeeded()
                if not worked:
                    await self._idle(conn)
            except _Stopped:
                return
            except DATABASE_ERRORS as exc:
                await database.failed(exc)
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
            body = claim.bodies.get(key) if delivery.send_payload else action_only(delivery.action)
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
                # routed while the webhook had send_payload off: no payload was ever built
                error = "no payload was built for this event (routed while send_payload was off)"
                outcome = Outcome(None, "payload_missing", error, "", 0.0)
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
            self._unrecorded += 1
        finally:
            self._inflight -= 1
            self._busy[delivery.webhook_id] -= 1
            self._due.claim = 0.0  # a place is free, and a capped webhook may have more
            self._wake.set()

    def _judge(
        self, delivery: Claimed, outcome: Outcome, started_at: datetime, logged: dict[str, str]
    ) -> Result:
        """What the attempt means for its delivery. Never raises: a decision that fails (a bug,
        a schedule no one foresaw) costs the attempt, recorded as an internal error, not the relay."""
        schedule = delivery.retry_schedule or self._settings.retry_schedule
        try:
            decision = decide(
                status=outcome.status,
                error_class=outcome.error_class,
                attempts_made=delivery.attempt,
                schedule=schedule,
                jitter=self._settings.retry_jitter,
                rng=self._rng,
                retry_after=parse_retry_after(outcome.retry_after, started_at),
            )
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("deciding on attempt %d of delivery %d failed", delivery.attempt, delivery.id)
            error = f"{type(exc).__name__} in the relay deciding the next attempt"
            failed = Outcome(outcome.status, "internal", error, "", outcome.duration_ms)
            return Result(delivery, "pending", FALLBACK_DELAY, started_at, failed, logged)
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
        """Give in-flight requests what is left of ``shutdown_grace`` but a reserve for recording
        and releasing, then cancel what is left."""
        grace = self._settings.shutdown_grace
        with anyio.move_on_after(self._left(reserve=min(STOP_RESERVE, grace / 4))):
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
                hastened = await self._write(batch)
                self._unrecorded -= len(batch)
                if hastened or any(r.state == "pending" for r in batch):
                    self._due.claim = 0.0  # a retry may be due at once
                self._wake.set()
        done.set()

    async def _write(self, batch: list[Result]) -> int:
        """Write one batch; returns how many waiting deliveries became due at once.

        Through database outages the batch is retried with growing backoff (the results stay in
        memory meanwhile). A batch the database, or psycopg, refuses for what it holds is split
        until the refused result is alone; that one is recorded as an internal error, so no result,
        however malformed, holds up the others.
        """
        database, hastened = self._record_db, 0
        parts: list[tuple[list[Result], bool]] = [(batch, False)]  # (results, substituted)
        while parts:
            part, substituted = parts.pop()
            try:
                conn = await database.get()
                recorded = await store.record_results(
                    conn,
                    part,
                    relay_id=self.id,
                    disable_after=self._settings.disable_after,
                    disable_after_attempts=self._settings.disable_after_attempts,
                )
            except Exception as exc:  # noqa: BLE001 - sorted below; cancellation passes
                if not _refused(exc):
                    await database.failed(exc)
                    parts.append((part, substituted))
                elif len(part) > 1:
                    half = len(part) // 2
                    parts += [(part[half:], substituted), (part[:half], substituted)]
                else:
                    self._refused(part[0], exc, parts, substituted)
                continue
            database.succeeded()
            hastened += recorded.hastened
            for webhook in recorded.disabled:
                log.warning("webhook %d disabled: %s", webhook.webhook_id, webhook.reason)
        return hastened

    @staticmethod
    def _refused(
        result: Result, exc: Exception, parts: list[tuple[list[Result], bool]], substituted: bool
    ) -> None:
        """One result the database refused: record it as an internal error instead, or, if even
        that was refused, leave it (its lease expires and the delivery is sent again)."""
        reason = f"{type(exc).__name__}: {_first_line(exc)}"[:300]
        delivery = result.delivery
        if substituted:
            log.error(
                "could not record attempt %d of delivery %d even as an internal error (%s);"
                " it is sent again once its lease expires",
                delivery.attempt,
                delivery.id,
                reason,
            )
            return
        log.error(
            "the database refused the result of attempt %d of delivery %d (%s);"
            " recorded as an internal error",
            delivery.attempt,
            delivery.id,
            reason,
        )
        parts.append(([unrecordable(result, reason)], True))

    # -- presence ----------------------------------------------------------------------------

    async def _register(self) -> bool:
        """Register this relay, waiting for the database as long as it takes; False if the relay
        was stopped meanwhile."""
        database = self._pipeline_db
        while True:
            try:
                await store.register(await database.get(), self.id)
            except _Stopped:
                return False
            except DATABASE_ERRORS as exc:
                await database.failed(exc)
                continue
            database.succeeded()
            return True

    async def _listen(self) -> None:
        """LISTEN on channel ``outbox``; every notification wakes the pipeline."""
        listener = self._listen_db
        try:
            while True:
                try:
                    conn = await listener.get()
                    await conn.execute("listen outbox")
                    listener.succeeded()
                    self._listening = True
                    self._due.all_now()  # catch up on anything committed while not listening
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._due.route = 0.0
                        self._wake.set()
                except _Stopped:
                    return
                except DATABASE_ERRORS as exc:
                    self._listening = False
                    await listener.failed(exc)
        finally:
            self._listening = False
            await listener.close()

    async def _housekeeping(self) -> None:
        """Heartbeats, and retention: every relay prunes a little now and then, in small batches."""
        housekeeping = self._housekeeping_db
        settings = self._settings
        interval = min(HEARTBEAT_INTERVAL, settings.poll_interval * 5)
        next_prune = time.monotonic() + self._rng.uniform(0, PRUNE_INTERVAL)
        try:
            while True:
                await anyio.sleep(interval)
                try:
                    conn = await housekeeping.get()
                    await store.heartbeat(conn, self.id)
                    housekeeping.succeeded()
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
                except _Stopped:
                    return
                except DATABASE_ERRORS as exc:
                    await housekeeping.failed(exc)
        finally:
            await housekeeping.close()

    async def _release(self) -> None:
        """Hand unfinished deliveries back at once, instead of letting their leases expire: on a
        connection of its own (the pipeline's may have been interrupted), within the stop
        deadline."""
        releasing = _Database(self._dsn, "release", self._settings)
        try:
            with anyio.move_on_after(self._left()):
                try:
                    conn = await releasing.get()
                    await store.release_leases(conn, self.id)
                    await store.unregister(conn, self.id)
                    return
                except DATABASE_ERRORS as exc:
                    log.warning("could not release leases (%s); they expire by themselves", _first_line(exc))
                    return
            log.warning("could not release leases in time; they expire by themselves")
        finally:
            await releasing.close()


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
