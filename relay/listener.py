"""The listener: LISTEN on channel ``outbox`` on a connection of its own, and turn every
notification into a wake-up of the pipeline. NOTIFY is only a hint: while the listener is not
connected, the relay keeps its flag down (no trigger notifies) and the pipeline polls."""

from __future__ import annotations

from collections.abc import Callable

from relay.database import DATABASE_ERRORS, Database, Stopped

# catch_up: True once (re)connected (anything may have committed unheard), False per notification
OnWake = Callable[[bool], None]


class Listener:
    def __init__(self, database: Database, on_wake: OnWake) -> None:
        self._database = database
        self._on_wake = on_wake
        self.listening = False

    async def run(self) -> None:
        database = self._database
        try:
            while True:
                try:
                    conn = await database.get()
                    await conn.execute("listen outbox")
                    database.succeeded()
                    self.listening = True
                    self._on_wake(True)
                    async for _ in conn.notifies():
                        self._on_wake(False)
                except Stopped:
                    return
                except DATABASE_ERRORS as exc:
                    self.listening = False
                    await database.failed(exc)
        finally:
            self.listening = False
            await database.close()
