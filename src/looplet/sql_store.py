"""Run records in a SQL database (PostgreSQL or SQLite): the `RunStore` for runs that many processes share.

Workers on several machines reach one PostgreSQL database but no common
directory, so a `FileCheckpointStore` cannot serve them: this store keeps a
run's record and its journal in tables beside DBOS's own (``looplet_runs``,
``looplet_run_entries``, created on first use), as compact strict JSON text.

A save replaces the record and deletes the run's journal in one transaction,
so a load (one transaction too) sees the old record with its entries or the
new one with none, never a mix.

The lock, by database:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a
  connection held for as long as the lock is. The server frees it the moment
  that connection ends, so the lock of a worker killed with SIGKILL is gone
  as soon as its socket closes, and whichever process recovers the run can
  take it at once:
  no expiry to tune, no clock shared between machines, no heartbeat.
- SQLite: no advisory locks, so a lease row (owner and expiry) renewed by a
  background thread while held; a lease whose expiry passed, or whose owner
  is a process of this machine that no longer runs, is taken over.

SQLAlchemy (and psycopg for PostgreSQL) come with ``looplet[dbos]`` and are
imported only when a store is made.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import secrets
import socket
import threading
import time
from typing import Any

from .checkpoints import RunLock, _check_record, _check_run_id, _HeldLock, _json_text
from .errors import CheckpointError, CheckpointLocked, ConfigError

__all__ = ["SqlRunStore", "sqlalchemy_url"]

INSTALL_HINT = 'a SQL run store needs SQLAlchemy: pip install "looplet[dbos]"'
#: how long a SQLite lease lasts without renewal; the holder renews it every third of that
LEASE_S = 30.0


def _sqlalchemy() -> Any:
    try:
        return importlib.import_module("sqlalchemy")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def sqlalchemy_url(url: str) -> str:
    """`url` with a driver SQLAlchemy has here: ``postgresql://`` means psycopg (3), as DBOS uses."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _tables(sa: Any) -> tuple[Any, Any, Any, Any]:
    """The metadata and the three tables: records, journal entries, SQLite leases."""
    meta = sa.MetaData()
    runs = sa.Table(
        "looplet_runs",
        meta,
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("saves", sa.Integer, nullable=False),
    )
    entries = sa.Table(
        "looplet_run_entries",
        meta,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Index("looplet_run_entries_run", "namespace", "run_id", "id"),
    )
    leases = sa.Table(
        "looplet_run_leases",
        meta,
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    return meta, runs, entries, leases


class SqlRunStore:
    """Runs kept in a SQL database, in `namespace` (several stores can share the tables).

    Args:
        url: a SQLAlchemy or DBOS database URL (``postgresql://...``, ``sqlite:///path``).
        namespace: keeps this store's runs apart from others in the same tables.
        lease_s: the SQLite lease's length (PostgreSQL uses advisory locks).
    """

    def __init__(self, url: str, *, namespace: str = "default", lease_s: float = LEASE_S) -> None:
        sa = _sqlalchemy()
        if not namespace or len(namespace) > 128:
            raise ConfigError(f"a store namespace is 1-128 characters, got {namespace!r:.80}")
        self._sa = sa
        self.namespace = namespace
        self.lease_s = lease_s
        self._engine = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
        self._where = f"{self._engine.url.render_as_string(hide_password=True)}#{namespace}"
        self._postgres = self._engine.dialect.name == "postgresql"
        self._meta, self._runs, self._entries, self._leases = _tables(sa)
        self._guard("create the tables", lambda: self._meta.create_all(self._engine))

    def __repr__(self) -> str:
        return f"SqlRunStore({self._where!r})"

    def close(self) -> None:
        """Close the store's connections (held locks keep theirs until released)."""
        self._engine.dispose()

    # -- records and journals

    def save(self, run_id: str, record: dict[str, Any]) -> None:
        run_id = _check_run_id(run_id)
        where = self._at(run_id)
        text = _json_text(where, _check_record(where, run_id, record), "record")
        self._guard(f"save run {run_id!r}", lambda: self._save(run_id, text))

    def append(self, run_id: str, entry: dict[str, Any]) -> None:
        run_id = _check_run_id(run_id)
        where = self._at(run_id)
        if not isinstance(entry, dict):
            raise CheckpointError(where, f"a journal entry is a dict, got {type(entry).__name__}")
        text = _json_text(where, entry, "journal entry")
        if not self._guard(f"append to run {run_id!r}", lambda: self._append(run_id, text)):
            raise CheckpointError(where, f"no saved run {run_id!r}: save its record before appending")

    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        run_id = _check_run_id(run_id)
        found = self._guard(f"load run {run_id!r}", lambda: self._load(run_id))
        if found is None:
            raise CheckpointError(self._at(run_id), f"no saved run {run_id!r} in this store")
        record_text, entry_texts = found
        return json.loads(record_text), [json.loads(text) for text in entry_texts]

    def list_runs(self) -> list[str]:
        runs = self._runs
        query = (
            self._sa.select(runs.c.run_id).where(runs.c.namespace == self.namespace).order_by(runs.c.run_id)
        )

        def read() -> list[str]:
            with self._engine.connect() as conn:
                return [row[0] for row in conn.execute(query)]

        ids: list[str] = self._guard("list the runs", read)
        return ids

    def lock(self, run_id: str) -> RunLock:
        run_id = _check_run_id(run_id)
        if self._postgres:
            return self._guard(f"lock run {run_id!r}", lambda: self._advisory_lock(run_id))  # type: ignore[no-any-return]
        return self._guard(f"lock run {run_id!r}", lambda: self._lease(run_id))  # type: ignore[no-any-return]

    # -- the statements

    def _mine(self, table: Any, run_id: str) -> Any:
        return self._sa.and_(table.c.namespace == self.namespace, table.c.run_id == run_id)

    def _save(self, run_id: str, text: str) -> None:
        runs, entries = self._runs, self._entries
        with self._engine.begin() as conn:
            conn.execute(entries.delete().where(self._mine(entries, run_id)))
            changed = conn.execute(
                runs.update().where(self._mine(runs, run_id)).values(record=text, saves=runs.c.saves + 1)
            )
            if changed.rowcount == 0:
                conn.execute(
                    runs.insert().values(namespace=self.namespace, run_id=run_id, record=text, saves=1)
                )

    def _append(self, run_id: str, text: str) -> bool:
        runs, entries = self._runs, self._entries
        with self._engine.begin() as conn:
            saved = conn.execute(self._sa.select(runs.c.saves).where(self._mine(runs, run_id))).first()
            if saved is None:
                return False
            conn.execute(entries.insert().values(namespace=self.namespace, run_id=run_id, entry=text))
            return True

    def _load(self, run_id: str) -> tuple[str, list[str]] | None:
        sa, runs, entries = self._sa, self._runs, self._entries
        engine = (
            self._engine.execution_options(isolation_level="REPEATABLE READ")
            if self._postgres
            else self._engine
        )
        with engine.begin() as conn:  # one snapshot: the record and the entries after it
            row = conn.execute(sa.select(runs.c.record).where(self._mine(runs, run_id))).first()
            if row is None:
                return None
            query = sa.select(entries.c.entry).where(self._mine(entries, run_id)).order_by(entries.c.id)
            return row[0], [line[0] for line in conn.execute(query)]

    # -- locks

    def _advisory_lock(self, run_id: str) -> RunLock:
        key = _lock_key(self.namespace, run_id)
        conn = self._engine.connect()
        try:
            taken = conn.execute(self._sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            raise CheckpointLocked(
                self._at(run_id),
                f"run {run_id!r} is being continued by another session; the lock goes when it ends or exits",
            )

        def release() -> None:
            try:
                conn.execute(self._sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
            finally:
                conn.close()  # closing the session frees the lock in any case

        return _HeldLock(release)

    def _lease(self, run_id: str) -> RunLock:
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        try:
            holder = self._take_lease(run_id, owner)
        except self._sa.exc.IntegrityError:
            holder = None  # another process inserted its lease between our read and our insert
        if holder != owner:
            raise CheckpointLocked(
                self._at(run_id),
                f"run {run_id!r} is leased by {_describe(holder)}; the lease goes when it is released "
                f"or {self.lease_s:g} s after its holder stops renewing it",
            )
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(run_id, owner, stop), name=f"looplet-lease-{run_id}", daemon=True
        )
        renewer.start()

        def release() -> None:
            stop.set()
            renewer.join()
            leases = self._leases
            with self._engine.begin() as conn:
                conn.execute(leases.delete().where(self._mine(leases, run_id), leases.c.owner == owner))

        return _HeldLock(release)

    def _take_lease(self, run_id: str, owner: str) -> str | None:
        """Insert the lease, or take over an expired or orphaned one; returns the holder after."""
        sa, leases = self._sa, self._leases
        now = time.time()
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(leases.c.owner, leases.c.expires_at).where(self._mine(leases, run_id))
            ).first()
            if row is None:
                conn.execute(
                    leases.insert().values(
                        namespace=self.namespace, run_id=run_id, owner=owner, expires_at=now + self.lease_s
                    )
                )
                return owner
            if row[1] < now or _orphaned(row[0]):
                taken = conn.execute(
                    leases.update()
                    .where(self._mine(leases, run_id), leases.c.owner == row[0])
                    .values(owner=owner, expires_at=now + self.lease_s)
                )
                return owner if taken.rowcount == 1 else None  # None: another process took it first
            return str(row[0])

    def _renew(self, run_id: str, owner: str, stop: threading.Event) -> None:
        leases = self._leases
        while not stop.wait(self.lease_s / 3):
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        leases.update()
                        .where(self._mine(leases, run_id), leases.c.owner == owner)
                        .values(expires_at=time.time() + self.lease_s)
                    )
            except self._sa.exc.SQLAlchemyError:
                continue  # a busy database: the next renewal comes well before the expiry

    # -- errors

    def _at(self, run_id: str) -> str:
        return f"{self._where}/{run_id}"

    def _guard(self, what: str, action: Any) -> Any:
        """Run `action`; a database failure becomes a CheckpointError saying what could not be done."""
        try:
            return action()
        except self._sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise CheckpointError(self._where, f"could not {what}: {type(exc).__name__}: {detail}") from None


def _lock_key(namespace: str, run_id: str) -> int:
    """A run's advisory lock key: 64 bits of a hash of its namespace and id, as a signed bigint."""
    digest = hashlib.sha256(f"looplet\0{namespace}\0{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _orphaned(owner: str) -> bool:
    """True when the lease's owner is a process of this machine that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _describe(owner: str | None) -> str:
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on {host}" if pid else "another process"
