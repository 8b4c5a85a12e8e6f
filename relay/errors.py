"""The error classes of failed attempts: one name each, in the relay, the attempt log
(``outbox.attempt.error_class``), the API and the docs (docs/delivery.md)."""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """Why an attempt failed (docs/delivery.md lists them); stored as text in outbox.attempt."""

    TIMEOUT = "timeout"  # connecting, or waiting for the response, took too long
    CONNECT = "connect"  # the connection was refused or could not be made
    DNS = "dns"  # the name did not resolve
    TLS = "tls"  # certificate or handshake
    CONNECTION = "connection"  # the receiver closed the connection or broke HTTP
    REQUEST = "request"  # anything else that failed while sending
    HTTP_STATUS = "http_status"  # an answer other than 2xx or a redirect
    REDIRECT = "redirect"  # redirects are not followed
    BLOCKED = "blocked"  # the address policy refused the host
    INVALID_URL = "invalid_url"  # the URL cannot be requested
    TOO_LARGE = "too_large"  # the body is over OUTBOX_MAX_BODY_BYTES: never built, never sent
    PAYLOAD_MISSING = "payload_missing"  # routed while send_payload was off: there is no body
    NACK = "nack"  # a broker refused the message (negative acknowledgement, error reply)
    UNROUTABLE = "unroutable"  # an AMQP broker returned the message: no queue, or no exchange
    NO_STREAM = "no_stream"  # no JetStream stream takes the NATS subject
    INTERNAL = "internal"  # a bug in the relay; the attempt is counted, the relay goes on
