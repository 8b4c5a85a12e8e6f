"""Build: the bodies of payloads whose settle delay has passed, from the current rows, in bounded
memory; sql/queries.sql, section "relay: building payloads"."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.adapt import Loader
from psycopg.rows import DictRow

from outbox.sql import query
from relay import emitted, payloads
from relay.counters import CounterCache
from relay.database import Conn

# Bodies built in one step are fetched and encoded together: at most this many bytes of them
# (one body of the default OUTBOX_MAX_BODY_BYTES), so that a cycle of the pipeline stays short and
# the relay's memory bounded while a huge import is built. Bodies at least LARGE_BODY are built
# after the smaller ones due with them.
BUILD_BYTES = 16 * 1024 * 1024


LARGE_BODY = 1024 * 1024


class _FragmentLoader(Loader):
    """jsonb as an orjson.Fragment: Label Studio's JSON columns pass into payloads unparsed."""

    def load(self, data: Any) -> orjson.Fragment:
        return orjson.Fragment(bytes(data))


@dataclass(frozen=True)
class Pending:
    event_id: int
    chunk: int
    action: str
    project_id: int | None
    row_ids: tuple[int, ...]
    # estimated bytes of the body (None for payloads made before bodies were sized)
    size: int | None = None


async def build_payloads(
    conn: Conn, *, limit: int, max_rows: int, counters: CounterCache | None = None
) -> tuple[int, bool]:
    """Build the bodies of payloads whose settle delay has passed, small ones first, at most
    ``max_rows`` rows' and ``BUILD_BYTES`` bytes' worth (a 100,000-task import is built a chunk per
    call, in bounded memory and without holding up the rest). Returns how many were built and
    whether more are ready."""
    rows = await (
        await conn.execute(query("claim_payloads"), {"limit": limit, "large": LARGE_BODY})
    ).fetchall()
    pending = [
        Pending(
            r["event_id"], r["chunk"], r["action"], r["project_id"], tuple(r["row_ids"]), r["size_estimate"]
        )
        for r in rows
    ]
    group = next(iter(groups(pending, max_rows, BUILD_BYTES)), [])
    if group:
        snapshot = await fetch_snapshot(
            conn, [payloads.needs(p.action, p.project_id, p.row_ids) for p in group], counters
        )
        stored = await emitted.fetch_payloads(conn, [(p.event_id, p.action) for p in group])
        bodies = encode_bodies(group, snapshot, stored)
        await conn.execute(
            query("store_payloads"),
            {
                "event_ids": [p.event_id for p in group],
                "chunks": [p.chunk for p in group],
                "bodies": bodies,
            },
        )
    return len(group), len(group) < len(pending) or len(pending) == limit


def groups(pending: Sequence[Pending], max_rows: int, max_bytes: int) -> Iterable[list[Pending]]:
    """Consecutive payloads built together: at most ``max_rows`` rows and ``max_bytes`` bytes
    (one payload alone may be larger: it is bounded by OUTBOX_MAX_BODY_BYTES already)."""
    group: list[Pending] = []
    rows = size = 0
    for item in pending:
        item_size = item.size or 0
        if group and (rows + len(item.row_ids) > max_rows or size + item_size > max_bytes):
            yield group
            group, rows, size = [], 0, 0
        group.append(item)
        rows += len(item.row_ids)
        size += item_size
    if group:
        yield group


async def fetch_snapshot(
    conn: Conn, wanted: Sequence[payloads.Needs], counters: CounterCache | None = None
) -> payloads.Snapshot:
    """The current rows behind some payloads: a query per kind of row, in one round trip. jsonb columns come
    as orjson.Fragment, so Label Studio's JSON passes into payloads unparsed. ``counters``: the
    relay's cache of slow-to-count projects' counters (relay/counters.py); without one, every
    project is counted."""
    projects = sorted({i for n in wanted for i in n.projects})
    now = time.monotonic()
    reused = counters.fresh(projects, now) if counters is not None else {}
    to_count = [i for i in projects if i not in reused]
    tasks = sorted({i for n in wanted for i in n.tasks})
    annotations = sorted({i for n in wanted for i in n.annotations})
    links = sorted({i for n in wanted for i in n.label_links})
    predictions = sorted({i for n in wanted for i in n.predictions})
    queries = [
        ("fetch_projects", {"ids": projects}, bool(projects)),
        ("fetch_tasks", {"ids": tasks, "annotation_ids": annotations}, bool(tasks or annotations)),
        ("fetch_annotations", {"ids": annotations}, bool(annotations)),
        ("fetch_label_links", {"ids": links}, bool(links)),
        ("fetch_labels", {"link_ids": links}, bool(links)),
        ("fetch_predictions", {"ids": predictions}, bool(predictions)),
    ]
    kinds = len(queries)  # one statement per kind of row, then the counts
    # one statement per project counted, after the database's clock, so that each count's own time
    # is known (its clock minus the one before): all in the same round trip
    if to_count:
        queries += [("clock", {}, True)] + [("count_projects", {"ids": [i]}, True) for i in to_count]
    cursors: list[psycopg.AsyncCursor[DictRow] | None] = []
    for name, params, needed in queries:
        if not needed:
            cursors.append(None)
            continue
        cursor = conn.cursor()
        cursor.adapters.register_loader("jsonb", _FragmentLoader)
        cursor.adapters.register_loader("json", _FragmentLoader)
        await cursor.execute(query(name), params)
        cursors.append(cursor)
    found: list[dict[int, DictRow]] = []
    for pending in cursors[:kinds]:
        found.append({row["id"]: row for row in await pending.fetchall()} if pending else {})
    counted: dict[int, DictRow] = {}
    if to_count:
        clock, *counts = cursors[kinds:]
        assert clock is not None
        before = (await clock.fetchall())[0]["at"]
        for pending in counts:
            assert pending is not None
            for row in await pending.fetchall():  # (none when the project is gone)
                counted[row["id"]] = row
                if counters is not None:
                    counters.add(row["id"], row, at=now, took=row["counted_at"] - before)
                before = row["counted_at"]
    return payloads.Snapshot(
        projects={i: {**row, **(counted.get(i) or reused.get(i) or {})} for i, row in found[0].items()},
        tasks=found[1],
        annotations=found[2],
        label_links=found[3],
        labels=found[4],
        predictions=found[5],
    )


def encode_bodies(
    items: Sequence[Pending],
    snapshot: payloads.Snapshot,
    stored: Mapping[int, payloads.Emitted] | None = None,
) -> list[bytes]:
    """``stored``: the payloads of emitted events among ``items`` (relay/emitted.py), by event id."""
    if stored:
        return [
            payloads.encode(
                payloads.emitted_body(p.action, p.project_id, stored[p.event_id], snapshot)
                if p.event_id in stored
                else payloads.build_body(p.action, p.project_id, p.row_ids, snapshot)
            )
            for p in items
        ]
    return [payloads.encode(payloads.build_body(p.action, p.project_id, p.row_ids, snapshot)) for p in items]
