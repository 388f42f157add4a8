"""What the SQLite writer knows of its outbound rows without asking SQLite.

Two things, each saving a statement on a hot path:

- `written`: the highest seq ever written per client. The broker numbers a
  session's messages upwards, so a row with a higher seq was never written
  and deleting it needs no statement (see changes.py).
- Which rows refer to a shared message. A message queued for several
  sessions in one batch is stored once and its rows refer to it by id (see
  sqlite.py); it must go with the last of them, and an OutboundDeleted does
  not say whether its row referred to one. Asking SQLite on every delete (a
  trigger, or a SELECT first) would cost every message what only fan-out
  needs: measured, a trigger made deleting 40 rows 4.5 times slower. Here a
  delete looks its row up in a dict that, without fan-out to persistent
  sessions, is empty.

Both are loaded from the file when it opens, and again after a failed
transaction, which may have changed them for rows that were rolled back.
"""

from __future__ import annotations

import sqlite3


class OutboundIndex:
    __slots__ = ("refs", "rows", "written")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.written: dict[str, int] = dict(
            db.execute("SELECT client_id, max(seq) FROM outbound GROUP BY client_id")
        )
        self.rows: dict[str, dict[int, int]] = {}  # client id -> seq -> message id
        self.refs: dict[int, int] = {}  # message id -> rows referring to it
        shared = "SELECT client_id, seq, message_id FROM outbound WHERE message_id IS NOT NULL"
        for client_id, seq, message_id in db.execute(shared):
            self.refer(client_id, seq, message_id)

    def refer(self, client_id: str, seq: int, message_id: int) -> None:
        """A new row (client id, seq) refers to `message_id`."""
        self.rows.setdefault(client_id, {})[seq] = message_id
        self.refs[message_id] = self.refs.get(message_id, 0) + 1

    def release(self, client_id: str, seq: int, unreferenced: list[int]) -> None:
        """The row is deleted or replaced; its message, if this was its last
        row, goes to `unreferenced`."""
        seqs = self.rows.get(client_id)
        if seqs is None:
            return
        message_id = seqs.pop(seq, None)
        if not seqs:
            del self.rows[client_id]
        if message_id is not None:
            self._unref(message_id, unreferenced)

    def release_session(self, client_id: str, unreferenced: list[int]) -> None:
        """Every row of the client is deleted; its next session numbers from 1."""
        self.written.pop(client_id, None)
        for message_id in self.rows.pop(client_id, {}).values():
            self._unref(message_id, unreferenced)

    def _unref(self, message_id: int, unreferenced: list[int]) -> None:
        left = self.refs[message_id] - 1
        if left:
            self.refs[message_id] = left
        else:
            del self.refs[message_id]
            unreferenced.append(message_id)
