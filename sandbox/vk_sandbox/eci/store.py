"""SQLite persistence of container groups, written in batches off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from vk_sandbox.eci.model import Group

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    """Groups by id. ``save``/``remove`` only mark; ``flush`` writes everything marked in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._dirty: dict[str, Group | None] = {}
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    def load(self) -> list[Group]:
        rows = self._db.execute("SELECT data FROM groups ORDER BY seq").fetchall()
        return [Group.model_validate_json(r[0]) for r in rows]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def save(self, group: Group) -> None:
        self._dirty[group.id] = group

    def remove(self, group_id: str) -> None:
        self._dirty[group_id] = None

    @property
    def pending(self) -> int:
        return len(self._dirty)

    async def flush(self) -> None:
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            if not dirty:
                return
            upserts = [(g.id, g.seq, g.model_dump_json()) for g in dirty.values() if g is not None]
            deletes = [(gid,) for gid, g in dirty.items() if g is None]
            await asyncio.to_thread(self._write, upserts, deletes)

    def _write(self, upserts: list[tuple[str, int, str]], deletes: list[tuple[str]]) -> None:
        # A cancelled flush leaves its thread running: the thread lock keeps writes (and close) one at a time.
        with self._thread_lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO groups (id, seq, data) VALUES (?, ?, ?)", upserts)
            self._db.executemany("DELETE FROM groups WHERE id = ?", deletes)

    def close(self) -> None:
        with self._thread_lock:
            self._db.close()
