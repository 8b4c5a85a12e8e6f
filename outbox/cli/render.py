"""How the admin commands show webhooks, deliveries and events to people: rich tables on stdout.

URLs are shown without credentials or query string (they may hold tokens), and header values never:
``--json`` gives the API's full answer for scripts.
"""

from __future__ import annotations

import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from outbox.admin.adopt import Adoption, AdoptReport
from outbox.admin.models import DeliveryDetail, DeliveryPage, EventPage, Webhook
from relay.urls import redact_url

# Piped output (scripts, tests) is not folded to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

_STATE_STYLE = {"delivered": "green", "dead": "red", "pending": "yellow"}
_STATUS_STYLE = {"active": "green", "failing": "yellow", "paused": "dim", "disabled": "red"}


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _actions(webhook: Webhook) -> str:
    return "all" if webhook.send_for_all_actions else ", ".join(webhook.actions) or "(none)"


def render_webhooks(found: list[Webhook]) -> None:
    table = Table("ID", "ORG", "PROJECT", "URL", "ACTIONS", "STATUS", "SECRET", "FAILURES")
    for w in found:
        style = _STATUS_STYLE[w.status]
        table.add_row(
            str(w.id),
            str(w.organization),
            "org-level" if w.project is None else str(w.project),
            redact_url(w.url),
            _actions(w),
            f"[{style}]{w.status}[/]",
            "signed" if w.secret else "-",
            str(w.consecutive_failures),
        )
    console.print(table)
    console.print(f"{len(found)} webhook(s)")


def render_webhook(w: Webhook) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", w.id),
        ("organization", w.organization),
        ("project", "organization-level" if w.project is None else w.project),
        ("url", redact_url(w.url)),
        ("status", w.status + (f" ({w.disabled_reason})" if w.disabled_reason else "")),
        ("actions", _actions(w)),
        ("send payload", "yes" if w.send_payload else "no (action only)"),
        ("headers", ", ".join(w.headers) or "-"),
        ("secret", w.secret or "- (unsigned)"),
        ("description", _dash(w.description)),
        ("ordered", "yes" if w.ordered else "no"),
        ("max concurrency", w.max_concurrency),
        ("rate limit", "-" if w.rate_limit is None else f"{w.rate_limit:g}/s"),
        ("timeout", "default" if w.timeout is None else f"{w.timeout:g} s"),
        ("retry schedule", "default" if w.retry_schedule is None else w.retry_schedule),
        ("consecutive failures", w.consecutive_failures),
        ("last success", _when(w.health.last_success_at)),
        ("created", _when(w.created_at)),
        ("updated", _when(w.updated_at)),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


def render_deliveries(page: DeliveryPage) -> None:
    table = Table("ID", "WEBHOOK", "STATE", "ACTION", "EVENT", "ATTEMPTS", "LAST", "CREATED", "NEXT ATTEMPT")
    for d in page.results:
        last = _dash(d.last_status) if d.last_error is None else f"{_dash(d.last_status)} {d.last_error[:60]}"
        table.add_row(
            str(d.id),
            str(d.webhook),
            f"[{_STATE_STYLE[d.state]}]{d.state}[/]" + (" (in flight)" if d.in_flight else ""),
            d.action,
            str(d.event),
            str(d.attempts),
            last,
            _when(d.created_at),
            _when(d.next_attempt_at),
        )
    console.print(table)
    _next(page.next, len(page.results), "delivery", "deliveries")


def render_delivery(d: DeliveryDetail) -> None:
    console.print(
        f"delivery {d.id} of webhook {d.webhook}: [{_STATE_STYLE[d.state]}]{d.state}[/], "
        f"{d.action} (event {d.event}, chunk {d.chunk}), {d.attempts} attempt(s), "
        f"webhook-id {d.message_id}"
    )
    if d.state == "pending":
        console.print(f"next attempt: {_when(d.next_attempt_at)}" + (" (in flight)" if d.in_flight else ""))
    if not d.attempt_log:
        console.print("no attempt yet")
        return
    table = Table("#", "STARTED", "MS", "STATUS", "ERROR", "RESPONSE")
    for a in d.attempt_log:
        error = "-" if a.error_class is None else f"{a.error_class}: {a.error or ''}"[:80]
        table.add_row(
            str(a.attempt),
            _when(a.started_at),
            f"{a.duration_ms:.0f}",
            _dash(a.status_code),
            error,
            (a.response_body or "")[:60].replace("\n", " "),
        )
    console.print(table)


def render_events(page: EventPage) -> None:
    table = Table("ID", "ACTION", "ORG", "PROJECT", "ROWS", "PENDING", "DELIVERED", "DEAD", "CREATED")
    for e in page.results:
        table.add_row(
            str(e.id),
            e.action,
            _dash(e.organization),
            _dash(e.project),
            str(e.row_count),
            str(e.deliveries.pending),
            str(e.deliveries.delivered),
            str(e.deliveries.dead),
            _when(e.created_at),
        )
    console.print(table)
    _next(page.next, len(page.results), "event", "events")


def _next(cursor: str | None, shown: int, one: str, many: str) -> None:
    console.print(
        f"{shown} {one if shown == 1 else many}" + (f"; more with --cursor {cursor}" if cursor else "")
    )


def _adoption_line(a: Adoption, dry_run: bool) -> str:
    scope = "organization-level" if a.project is None else f"project {a.project}"
    actions = "all actions" if a.send_for_all_actions else ", ".join(a.actions) or "no action"
    headers = f"headers: {', '.join(a.headers)}" if a.headers else "no headers"
    what = f"Label Studio webhook {a.label_studio_webhook} ({scope}, {a.url}, {actions}, {headers})"
    if a.outcome == "skip":
        return f"skipped {what}: {a.reason}"
    if a.outcome == "already adopted":
        copy = "its copy was deleted since" if a.webhook is None else f"as webhook {a.webhook}"
        line = f"already adopted {what}, {copy}"
    else:
        line = f"would adopt {what}" if dry_run else f"adopted {what} as webhook {a.webhook}"
    if a.deactivate:
        line += "; would deactivate it in Label Studio" if dry_run else "; deactivated it in Label Studio"
    return line


def render_adoption(report: AdoptReport) -> None:
    """One line per Label Studio webhook, then the totals; plain text (URLs may hold brackets)."""
    if not report.adoptions:
        typer.echo("no Label Studio webhook to adopt")
        return
    for item in report.adoptions:
        typer.echo(_adoption_line(item, report.dry_run))
    new, known, skipped = (report.count(o) for o in ("adopt", "already adopted", "skip"))
    verb = "would adopt" if report.dry_run else "adopted"
    summary = f"{verb} {new}, {known} already adopted, {skipped} skipped"
    if report.deactivate:
        summary += (
            f"; {report.deactivated} {'would be ' if report.dry_run else ''}deactivated in Label Studio"
        )
    typer.echo(("dry run, nothing changed: " if report.dry_run else "") + summary)
    still_sending = [a for a in report.adoptions if a.outcome != "skip" and not a.deactivate]
    if not report.deactivate and still_sending and new:
        typer.echo(
            "Label Studio still sends to these webhooks too, so receivers get every event twice: "
            "run again with --deactivate (or switch them off on Label Studio's webhooks page)"
        )
