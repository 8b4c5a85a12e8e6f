"""The relay daemon: wait → route → build → claim → send → record (docs/design.md §4-§7).

One pipeline task routes committed changes into events, builds payloads whose settle delay has
passed, and claims due deliveries, which it hands to send tasks; it never waits on HTTP. Send tasks
POST and push their results to a recorder, which writes them in batches. A listener turns NOTIFY
into wake-ups, and the pipeline declares itself waiting (so that the capture triggers notify) only
when it is about to sleep. Any number of relays can run against one database.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from relay import build, claim, presence, route
from relay.claim import BodyCache
from relay.config import RelayConfig
from relay.counters import CounterCache
from relay.database import DATABASE_ERRORS, Conn, Database, Stopped, first_line, transaction, without_flush
from relay.deliveries import (
    FALLBACK_DELAY,
    Attempt,
    Claimed,
    Judged,
    Request,
    request_headers,
)
from relay.destinations import Destinations
from relay.errors import ErrorClass
from relay.housekeeping import Housekeeping
from relay.listener import Listener
from relay.pacing import BUSY_POLL, Due, WriteRate, claim_batch, next_route
from relay.payloads import action_only
from relay.recorder import Recorder
from relay.schedule import decide, parse_retry_after
from relay.sender import AiohttpSender, Sender
from relay.urls import AddressPolicy, redact_url

log = logging.getLogger("outbox.relay")

ROUTE_LIMIT = 1000
BUILD_LIMIT = 200
LEASE_MARGIN = 30.0
BODY_CACHE_BYTES = 64 * 1024 * 1024
# On stop, the part of OUTBOX_SHUTDOWN_GRACE kept for recording results and releasing leases once
# the requests in flight are done or cut off (at most a quarter of it).
STOP_RESERVE = 1.0


class Relay:
    """A relay process. ``run`` until ``stop`` (or cancellation)."""

    def __init__(
        self,
        dsn: str,
        config: RelayConfig,
        *,
        relay_id: UUID | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.id = relay_id or uuid4()
        self._dsn = dsn
        self._config = config
        self._sender = sender
        self._pipeline_db = Database(dsn, "pipeline", config)
        # Results only repeat work if a database crash loses them (the delivery is sent again, same
        # webhook-id): the recorder's commits do not wait for the WAL flush (docs/decisions.md).
        self._record_db = Database(dsn, "recorder", config, durable=False)
        self._listen_db = Database(dsn, "listener", config)
        self._housekeeping_db = Database(dsn, "housekeeping", config)
        # claims made while a backlog is routed, beside the pipeline's transaction
        self._beside_db = Database(dsn, "claim", config)
        self._backlogged = False  # the last routing took a full batch: more may be queued
        self._freed = anyio.Event()  # set when a send finishes
        self._claiming_beside = False  # a claim beside a routing is between BEGIN and COMMIT
        self._stopping = anyio.Event()
        self._stop_deadline = math.inf  # time.monotonic() by which run() has returned
        self._unrecorded = 0  # results sent to the recorder and not written yet
        self._wake = anyio.Event()
        self._waiting = False
        self._inflight = 0
        # deliveries this relay leased and has not recorded a result for: released on stop
        self._held: set[int] = set()
        # requests in flight per webhook: counted against max_concurrency with other relays' leases
        self._busy: Counter[int] = Counter()
        self._bodies = BodyCache(BODY_CACHE_BYTES)
        self._counters = CounterCache()
        self._rng = random.Random()
        self._due = Due()
        self._writes = WriteRate()
        self._claim_batch = claim_batch(config.concurrency)
        self._listener = Listener(self._listen_db, self._on_wake)
        self._recorder = Recorder(self._record_db, self.id, config, self._on_recorded)
        self._housekeeping = Housekeeping(self._housekeeping_db, self.id, config, self._rng)

    def _on_wake(self, catch_up: bool) -> None:
        """A notification (route now), or the listener (re)connected: anything may have
        committed unheard, so every step runs now."""
        if catch_up:
            self._due.all_now()
        else:
            self._due.route = 0.0
        self._wake.set()

    def _on_recorded(self, delivery_ids: list[int], retry_due: bool) -> None:
        self._unrecorded -= len(delivery_ids)
        self._held.difference_update(delivery_ids)
        if retry_due:
            self._due.claim = 0.0  # a retry may be due at once
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; ``run`` returns within ``shutdown_grace`` seconds, whatever the database
        does: in-flight requests get most of it, then their results are recorded and the rest is
        released. Waits for the database give up at once (the recorder's at the deadline)."""
        if self._stopping.is_set():
            return
        self._stop_deadline = time.monotonic() + self._config.shutdown_grace
        self._stopping.set()
        self._wake.set()
        for database in (self._pipeline_db, self._listen_db, self._housekeeping_db, self._beside_db):
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
            self._config.shutdown_grace,
            self._unrecorded,
        )
        scope.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        config = self._config
        policy = AddressPolicy(config.block_private_networks, config.https_only, config.broker_tls_only)
        sender = self._sender = self._sender or Destinations(
            AiohttpSender(
                concurrency=config.concurrency,
                connect_timeout=config.connect_timeout,
                max_body_bytes=config.max_body_bytes,
                policy=policy,
            ),
            policy=policy,
            connect_timeout=config.connect_timeout,
            max_body_bytes=config.max_body_bytes,
        )
        results_in, results_out = anyio.create_memory_object_stream[Judged](math.inf)
        log.info(
            "relay %s starting (concurrency %d, poll every %.1fs, settle %d ms)",
            self.id,
            config.concurrency,
            config.poll_interval,
            config.settle_ms,
        )
        try:
            async with anyio.create_task_group() as shutdown:
                shutdown.start_soon(self._enforce_deadline, shutdown.cancel_scope)
                if await self._register():
                    async with anyio.create_task_group() as background:
                        background.start_soon(self._listener.run)
                        background.start_soon(self._housekeeping.run)
                        recorder_done = anyio.Event()
                        background.start_soon(self._recorder.run, results_out, recorder_done)
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
                await self._beside_db.close()
                await self._record_db.close()
            log.info("relay %s stopped", self.id)

    # -- the pipeline ------------------------------------------------------------------------

    async def _pipeline(self, sends: TaskGroup, results: MemoryObjectSendStream[Judged]) -> None:
        database = self._pipeline_db
        while not self._stopping.is_set():
            self._wake = anyio.Event()
            try:
                conn = await database.get()
                worked = await self._cycle(conn, sends, results)
                database.succeeded()
                if not worked:
                    await self._wait(conn)
            except Stopped:
                return
            except DATABASE_ERRORS as exc:
                await database.failed(exc)
                self._due.all_now()

    async def _cycle(self, conn: Conn, sends: TaskGroup, results: MemoryObjectSendStream[Judged]) -> bool:
        """One transaction over the steps that are due: route, build, claim. True when one found
        work. One transaction, because a new event with no settle delay is then sent after one
        commit instead of three."""
        config = self._config
        due, now = self._due, time.monotonic()
        if now < min(due.route, due.build, due.claim if self._places() else math.inf):
            return False
        worked = False
        claimed = claim.Claim([], {})
        async with transaction(conn):
            if now >= due.route:
                report = await self._route(conn, sends, results)
                for key, body in report.bodies.items():
                    self._bodies.put(key, body)
                self._writes.add(report.changes, now)
                due.route = next_route(
                    now, report.changes, ROUTE_LIMIT, config.poll_interval, busy=self._writes.busy(now)
                )
                self._backlogged = report.changes >= ROUTE_LIMIT
                if report.changes:
                    self._waiting = False
                    if report.events:
                        due.ready(now + config.settle_ms / 1000, build=report.unbuilt, now=now)
                    worked = True
            if now >= due.build:
                built, more = await build.build_payloads(
                    conn, limit=BUILD_LIMIT, max_rows=config.webhook_batch_size, counters=self._counters
                )
                due.build = now if more else due.next_build(now, config.poll_interval)
                if built:
                    due.claim = now
                    worked = True
            places = self._places()  # after routing: claims beside it may have taken some
            if places and now >= due.claim and not self._stopping.is_set():
                claimed = await self._claim(conn, places)
                due.claim = (
                    now if len(claimed.deliveries) == places else due.next_ready(now, config.poll_interval)
                )
            if not claimed.deliveries:
                await without_flush(conn)  # nothing will be sent on the strength of it
        # committed: only now may requests go out
        self._dispatch(claimed, sends, results)
        return worked or bool(claimed.deliveries)

    def _places(self) -> int:
        """How many deliveries a claim may take now: none until half the places are free (a claim
        per freed place would cost a claim per delivery), unless nothing is in flight."""
        free = self._config.concurrency - self._inflight
        return free if free >= self._claim_batch or (free > 0 and not self._inflight) else 0

    async def _claim(self, conn: Conn, limit: int) -> claim.Claim:
        config = self._config
        return await claim.claim_deliveries(
            conn,
            relay_id=self.id,
            limit=limit,
            timeout=config.webhook_timeout,
            lease_margin=LEASE_MARGIN,
            cached=self._bodies,
            busy=self._busy,
        )

    async def _route(
        self, conn: Conn, sends: TaskGroup, results: MemoryObjectSendStream[Judged]
    ) -> route.RouteReport:
        """Route. While a backlog is routed (a full batch takes 100-200 ms), what earlier batches
        routed is claimed and sent beside it, on a connection of its own: draining 20,000 queued
        events, the relay sent 64 deliveries per 250 ms while routing without, ~550 with
        (docs/performance.md). Not while this routing lowers the waiting flag: a claim writes the
        relay's row too, and would wait for this transaction, which waits for the claims."""
        config = self._config
        routing = route.route_changes(
            conn,
            relay_id=self.id,
            limit=ROUTE_LIMIT,
            batch_size=config.webhook_batch_size,
            settle=timedelta(milliseconds=config.settle_ms),
            clear_waiting=self._waiting,
            max_bytes=config.max_body_bytes,
            # no settle delay: build while routing, one statement and round trip fewer
            build_rows=config.webhook_batch_size if config.settle_ms == 0 else 0,
            counters=self._counters,
        )
        if not self._backlogged or self._waiting:
            return await routing
        routed = anyio.Event()
        failure: Exception | None = None
        async with anyio.create_task_group() as beside:
            beside.start_soon(self._claim_beside, routed, sends, results)
            try:
                report = await routing
            except DATABASE_ERRORS as exc:  # raised below, outside the task group (not as a group)
                failure = exc
            finally:
                routed.set()
                self._freed.set()
                # A claim in progress is let finish (a claim cancelled after its COMMIT was sent
                # would leave its leases to expire); waiting for a connection or a backoff is not.
                if not self._claiming_beside:
                    beside.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return report

    async def _claim_beside(
        self, routed: anyio.Event, sends: TaskGroup, results: MemoryObjectSendStream[Judged]
    ) -> None:
        """Claim and dispatch whenever places are free, until ``routed`` or nothing is due."""
        database = self._beside_db
        while not routed.is_set() and not self._stopping.is_set():
            places = self._places()
            if not places:
                self._freed = anyio.Event()
                await self._freed.wait()
                continue
            try:
                conn = await database.get()
                self._claiming_beside = True
                try:
                    async with transaction(conn):
                        claimed = await self._claim(conn, places)
                finally:
                    self._claiming_beside = False
                database.succeeded()
            except Stopped:
                return
            except DATABASE_ERRORS as exc:  # the pipeline claims after routing, as without a backlog
                await database.failed(exc)
                return
            self._dispatch(claimed, sends, results)
            if len(claimed.deliveries) < places:
                return  # nothing else is due until this routing commits

    def _dispatch(
        self, claimed: claim.Claim, sends: TaskGroup, results: MemoryObjectSendStream[Judged]
    ) -> None:
        for delivery in claimed.deliveries:
            key = (delivery.event_id, delivery.chunk)
            body = claimed.bodies.get(key) if delivery.send_payload else action_only(delivery.action)
            refused = claimed.refused.get(key) if delivery.send_payload else None
            self._inflight += 1
            self._busy[delivery.webhook_id] += 1
            self._held.add(delivery.id)
            sends.start_soon(self._deliver, delivery, body, results, refused)

    async def _wait(self, conn: Conn) -> None:
        """Sleep until notified, a send finishes, something falls due, or the poll interval.

        Only a relay with nothing left to claim raises its waiting flag (one write, which makes the
        capture triggers NOTIFY): one that waits for free places is woken by its own sends, and
        one that routes many changes a second polls every BUSY_POLL instead.
        """
        due, now = self._due, time.monotonic()
        timeout = max(0.0, min(due.route, due.build, due.claim) - now)
        capacity_bound = self._config.concurrency - self._inflight < self._claim_batch
        if self._writes.busy(now):
            # Label Studio is writing hard: poll briefly rather than make every commit NOTIFY
            due.route = min(due.route, now + BUSY_POLL)
            timeout = min(timeout, BUSY_POLL)
        elif self._listener.listening and not self._waiting and not capacity_bound:
            waiting = await presence.set_waiting(conn, self.id)
            self._waiting = True
            if waiting.has_changes:
                due.route = now
                return
            until = waiting.seconds_until_due()
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
        results: MemoryObjectSendStream[Judged],
        refused: str | None = None,
    ) -> None:
        try:
            started_at = datetime.now(UTC)
            if refused is not None:  # a chunk too large to build: dead at once, never sent
                attempt = Attempt(None, ErrorClass.TOO_LARGE, refused, "", 0.0)
                logged: dict[str, str] = {}
            elif body is None:
                # routed while the webhook had send_payload off: no payload was ever built
                error = "no payload was built for this event (routed while send_payload was off)"
                attempt = Attempt(None, ErrorClass.PAYLOAD_MISSING, error, "", 0.0)
                logged = {}
            else:
                sender = self._sender
                assert sender is not None
                headers, logged = request_headers(delivery, body, int(time.time()), self._config.user_agent)
                timeout = delivery.timeout or self._config.webhook_timeout
                try:
                    attempt = await sender.send(Request(delivery.url, body, headers, timeout))
                except Exception as exc:  # a bug must cost one attempt, not the relay
                    log.exception("sending delivery %d failed unexpectedly", delivery.id)
                    attempt = Attempt(
                        None, ErrorClass.INTERNAL, f"{type(exc).__name__} in the relay", "", 0.0
                    )
            result = self._judge(delivery, attempt, started_at, logged)
            _log_result(result)
            results.send_nowait(result)
            self._unrecorded += 1
        finally:
            self._inflight -= 1
            self._busy[delivery.webhook_id] -= 1
            self._due.claim = 0.0  # a place is free, and a capped webhook may have more
            self._wake.set()
            self._freed.set()

    def _judge(
        self, delivery: Claimed, attempt: Attempt, started_at: datetime, logged: dict[str, str]
    ) -> Judged:
        """What the attempt means for its delivery. Never raises: a decision that fails (a bug,
        a schedule no one foresaw) costs the attempt, recorded as an internal error, not the relay."""
        schedule = delivery.retry_schedule or self._config.retry_schedule
        try:
            decision = decide(
                status=attempt.status,
                error_class=attempt.error_class,
                attempts_made=delivery.attempt_number,
                schedule=schedule,
                jitter=self._config.retry_jitter,
                rng=self._rng,
                retry_after=parse_retry_after(attempt.retry_after, started_at),
            )
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception(
                "deciding on attempt %d of delivery %d failed", delivery.attempt_number, delivery.id
            )
            error = f"{type(exc).__name__} in the relay deciding the next attempt"
            failed = Attempt(attempt.status, ErrorClass.INTERNAL, error, "", attempt.duration_ms)
            return Judged(delivery, "pending", FALLBACK_DELAY, started_at, failed, logged)
        return Judged(
            delivery,
            decision.state,
            decision.delay,
            started_at,
            attempt,
            logged,
            decision.disable_reason,
        )

    async def _drain(self, sends: TaskGroup) -> None:
        """Give in-flight requests what is left of ``shutdown_grace`` but a reserve for recording
        and releasing, then cancel what is left."""
        grace = self._config.shutdown_grace
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

    # -- presence ----------------------------------------------------------------------------

    async def _register(self) -> bool:
        """Register this relay, waiting for the database as long as it takes; False if the relay
        was stopped meanwhile."""
        database = self._pipeline_db
        while True:
            try:
                await presence.register(await database.get(), self.id, self._config.version)
            except Stopped:
                return False
            except DATABASE_ERRORS as exc:
                await database.failed(exc)
                continue
            database.succeeded()
            return True

    async def _release(self) -> None:
        """Hand unfinished deliveries back at once, instead of letting their leases expire: on a
        connection of its own (the pipeline's may have been interrupted), within the stop
        deadline."""
        releasing = Database(self._dsn, "release", self._config)
        try:
            with anyio.move_on_after(self._left()):
                try:
                    conn = await releasing.get()
                    await claim.release_leases(conn, self.id, sorted(self._held))
                    await presence.unregister(conn, self.id)
                    return
                except DATABASE_ERRORS as exc:
                    log.warning("could not release leases (%s); they expire by themselves", first_line(exc))
                    return
            log.warning("could not release leases in time; they expire by themselves")
        finally:
            await releasing.close()


def _log_result(result: Judged) -> None:
    """One line per delivery outcome: INFO when delivered, WARNING otherwise. Its fields go in
    ``extra`` too, for the JSON log format (never a header value or a secret: the URL is redacted)."""
    level = logging.INFO if result.state == "delivered" else logging.WARNING
    if not log.isEnabledFor(level):
        return  # formatting costs more than the rest of a delivery's bookkeeping
    delivery, attempt = result.delivery, result.attempt
    where = f"webhook {delivery.webhook_id} ({redact_url(delivery.url)})"
    what = f"{delivery.action} event {delivery.event_id}" + (
        f" chunk {delivery.chunk}" if delivery.chunk else ""
    )
    took = f"{attempt.duration_ms:.1f} ms"
    fields = {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "chunk": delivery.chunk,
        "webhook_id": delivery.webhook_id,
        "action": delivery.action,
        "state": result.state,
        "status": attempt.status,
        "error_class": attempt.error_class,
        "duration_ms": round(attempt.duration_ms, 1),
        "attempt": delivery.attempt_number,
    }
    if result.state == "delivered":
        log.info(
            "delivered %s to %s: HTTP %s in %s (attempt %d)",
            what,
            where,
            attempt.status,
            took,
            delivery.attempt_number,
            extra=fields,
        )
    elif result.state == "pending":
        log.warning(
            "attempt %d of %s to %s failed: %s; next attempt in %.1f s",
            delivery.attempt_number,
            what,
            where,
            attempt.error,
            result.delay or 0.0,
            extra={**fields, "next_attempt_in": result.delay},
        )
    else:
        log.warning(
            "%s to %s is dead after %d attempt(s): %s",
            what,
            where,
            delivery.attempt_number,
            attempt.error,
            extra=fields,
        )
