"""The DuckDB file: where it is, how to open it, and its tables.

One embedded file holds the whole state. Which file: ``--db PATH``, else the
``FRP_DB`` environment variable, else ``data/frp.duckdb`` (the demo, built on first
run). The command line and the dashboard use the same rule through :func:`resolve_path`.

Concurrent use. DuckDB lets one process at a time hold the file read-write; while it
does, every other process (even read-only) is refused the file. So nobody keeps the file
open: the command line and the dashboard open a connection per operation
(:func:`open_db`) and close it at once. :func:`connect` retries a refused open with
bounded back-off for up to ``FRP_LOCK_TIMEOUT`` seconds (default 10) and then gives up
with one line saying the database is busy. Inside one process, connections share the
database and each has its own transaction; a write that collides with another's raises a
``duckdb.TransactionException``, which :func:`retry_conflicts` retries from the start.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from store import clock
from store.errors import StoreError

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "frp.duckdb"
ENV_VAR = "FRP_DB"
LOCK_TIMEOUT_VAR = "FRP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 10.0  # seconds to wait for another process to let go of the file
CONFLICT_ATTEMPTS = 5  # tries of a write that collides with another transaction

T = TypeVar("T")

#: A CSS referral waiting in its queue for the hand-off to the delivery team
#: (store/handoff.py); ``active`` is a partner referral waiting for the partner's answer.
QUEUED = "queued"
#: Referral statuses that keep the customer out of the FTCQ and out of later runs. A
#: partner referral (outcome ``frp``) in one of them holds the partner's seat; every seat
#: count reads them with ``outcome = 'frp'``. ``queued`` and ``handed_off``
#: (store/handoff.py) are for CSS referrals only, which never hold a seat.
OPEN_STATUSES = ("active", "accepted", QUEUED, "handed_off")
#: The same as an SQL list, for ``status IN {OPEN_SQL}``.
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
#: Referral statuses under which the partner keeps access to the customer: any other
#: (declined, expired) ended the referral without completion, so its unsent messages and
#: its open FTOP task are cancelled (docs/domain.md, "Referral life cycle").
DELIVERABLE = (*OPEN_STATUSES, "completed")

#: The shape of the store's tables; store/migrations.py has one step per version since 1.
SCHEMA_VERSION = 4

TABLES = """
CREATE SEQUENCE IF NOT EXISTS run_seq START 1;
CREATE SEQUENCE IF NOT EXISTS referral_seq START 1;
CREATE SEQUENCE IF NOT EXISTS task_seq START 1;
CREATE SEQUENCE IF NOT EXISTS audit_seq START 1;
CREATE SEQUENCE IF NOT EXISTS ftcq_seq START 1;

CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);

-- Partners as imported. active_referrals is the load held outside this tool (from the
-- partner file); referrals committed here are counted on top (see partner_state).
CREATE TABLE IF NOT EXISTS partners (
    partner_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    countries VARCHAR[] NOT NULL,
    languages VARCHAR[] NOT NULL,
    workloads VARCHAR[] NOT NULL,
    capacity BIGINT NOT NULL,
    active_referrals BIGINT NOT NULL,
    referral_ready BOOLEAN NOT NULL,
    psm_name VARCHAR NOT NULL,
    psm_email VARCHAR NOT NULL,
    contact_email VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- Availability and intake (docs/domain.md): not Referral Ready before paused_until, at
    -- most monthly_quota new referrals a calendar month; NULL for neither.
    paused_until DATE,
    monthly_quota BIGINT,
    -- The size buckets the partner takes (docs/domain.md, "Customer size"); NULL or
    -- empty: every size.
    sizes VARCHAR[]
);

-- The round-robin order: larger last_assigned = assigned more recently. Moved only by
-- commits (and by a partner file that carries last_assigned), never by simulations.
CREATE TABLE IF NOT EXISTS rr_order (
    partner_id VARCHAR PRIMARY KEY,
    last_assigned BIGINT NOT NULL
);

-- Every customer the store has seen; in_ftcq marks those waiting in the FTCQ backlog.
CREATE TABLE IF NOT EXISTS customers (
    tenant_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    country VARCHAR NOT NULL,
    language VARCHAR NOT NULL,
    seats BIGINT NOT NULL,
    workloads VARCHAR[] NOT NULL,
    gateway BOOLEAN NOT NULL,
    contact_email VARCHAR NOT NULL,
    referral_consent BOOLEAN,
    in_ftcq BOOLEAN NOT NULL,
    ftcq_seq BIGINT NOT NULL,
    queued_at TIMESTAMP NOT NULL,
    held_since TIMESTAMP
);

CREATE TABLE IF NOT EXISTS runs (
    run_id BIGINT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    policy VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    rules_toml VARCHAR NOT NULL,
    customers BIGINT NOT NULL,
    placed BIGINT NOT NULL,
    css BIGINT NOT NULL,
    skipped BIGINT NOT NULL,
    -- The team's rules version (rules_versions) the run's rules are; NULL when they are
    -- none of them (a --rules file of other rules) or the run is older than versions.
    rules_version BIGINT
);

CREATE TABLE IF NOT EXISTS referrals (
    referral_id BIGINT PRIMARY KEY,
    run_id BIGINT,
    tenant_id VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    partner_id VARCHAR,
    psm_name VARCHAR,
    psm_email VARCHAR,
    queue VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    trace VARCHAR,
    pool_key VARCHAR,
    region VARCHAR,
    country VARCHAR,
    language VARCHAR,
    eligible_workloads VARCHAR[],
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    decline_reason VARCHAR,
    -- When the partner and its PSM were reminded of a referral still active
    -- (store/lifecycle.py, expire); NULL until then, so it is reminded at most once.
    reminded_at TIMESTAMP,
    -- The customer's part this referral is (docs/domain.md, "Split by workload"): its
    -- number among the customer's parts (1 when it is not split) and the workloads it
    -- covers (all the customer's when it is not split).
    part INTEGER,
    workloads VARCHAR[]
);

CREATE TABLE IF NOT EXISTS pools (
    pool_key VARCHAR PRIMARY KEY,
    partner_ids VARCHAR[] NOT NULL
);

CREATE TABLE IF NOT EXISTS ftop_tasks (
    task_id BIGINT PRIMARY KEY,
    task_number INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    tenant_id VARCHAR NOT NULL,
    referral_id BIGINT NOT NULL,
    partner_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    service VARCHAR NOT NULL,
    mandatory BOOLEAN NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS outbox (
    message_id VARCHAR PRIMARY KEY,
    referral_id BIGINT NOT NULL,
    tenant_id VARCHAR NOT NULL,
    recipient_role VARCHAR NOT NULL,
    to_email VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    -- The HTML part of a notification (the plain-text part is `body`); NULL for messages
    -- queued before version 1 gained it: sent as text only.
    body_html VARCHAR,
    -- A sender's claim on a pending message (store/outbox.py): which run holds it and
    -- since when; NULL when nobody does. Another sender leaves it alone until it is stale.
    claimed_by VARCHAR,
    claimed_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY,
    logged_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    subject VARCHAR,
    details VARCHAR
);

"""

#: The team's rules, every version kept (store/rules.py): the highest is the current one.
RULES_VERSIONS = """
CREATE TABLE IF NOT EXISTS rules_versions (
    version BIGINT PRIMARY KEY,
    rules_toml VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    saved_at TIMESTAMP NOT NULL,
    note VARCHAR NOT NULL
);
"""

#: Open partner referrals held on top of the imported load; re-created by migrations.
PARTNER_STATE = f"""
CREATE OR REPLACE VIEW partner_state AS
SELECT
    p.*,
    p.active_referrals + coalesce(o.open_referrals, 0) AS active_total,
    coalesce(o.open_referrals, 0) AS open_referrals,
    r.last_assigned
FROM partners p
LEFT JOIN (
    SELECT partner_id, count(*) AS open_referrals
    FROM referrals
    WHERE outcome = 'frp' AND status IN {OPEN_SQL}
    GROUP BY partner_id
) o USING (partner_id)
LEFT JOIN rr_order r USING (partner_id);
"""

#: A new store at :data:`SCHEMA_VERSION` (store/migrations.py brings older ones forward).
DDL = TABLES + RULES_VERSIONS + PARTNER_STATE


def resolve_path(path: str | Path | None = None) -> Path:
    """``--db`` if given, else ``$FRP_DB``, else the default file under data/."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_DB


def lock_timeout() -> float:
    """Seconds to wait for a busy database: ``$FRP_LOCK_TIMEOUT``, else 10."""
    text = os.environ.get(LOCK_TIMEOUT_VAR, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise StoreError(
            f"{LOCK_TIMEOUT_VAR}={text!r}: expected a number of seconds, e.g. 10"
        ) from None
    if not value >= 0:  # also refuses NaN
        raise StoreError(f"{LOCK_TIMEOUT_VAR}={text!r}: expected a number of seconds >= 0")
    return value


def _busy(exc: duckdb.Error) -> bool:
    """Another holder of the file: a process (file lock) or, in this process, a connection
    opened with the other mode (read-only vs read-write); both let go soon."""
    text = str(exc)
    return "Could not set lock" in text or (
        isinstance(exc, duckdb.ConnectionException) and "different configuration" in text
    )


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    timeout: float | None = None,
    schema: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed, unless read-only) the store, checked to be one.

    A file held by another process is retried with bounded back-off for ``timeout``
    seconds (default :func:`lock_timeout`), then refused with a one-line StoreError. The
    file must be this product's store of a version this code knows (store/migrations.py):
    an older one is brought forward first, an empty one becomes a store, anything else
    (another application's file, a newer version's, a damaged one) is a one-line
    StoreError and nothing is written. ``schema=False`` skips the check (a caller that
    already made it on this file). The caller closes the connection; :func:`open_db`
    does it for you.
    """
    p = Path(path)
    if read_only and not p.exists():
        raise StoreError(f"{p}: no such database; create it with `frp demo` or `frp import`")
    if not read_only:
        make_folder(p.parent, p)
        if p.is_file() and p.stat().st_size == 0:  # an empty new file (mktemp): not yet a store
            p.unlink()
    con = _open(p, read_only, lock_timeout() if timeout is None else max(0.0, timeout))
    try:
        # Never read a Python variable for a name the database lacks: a missing table is
        # an error, not whatever frame the caller happens to hold under that name.
        con.execute("SET python_enable_replacements = false")
        if not schema:
            return con
        from store import migrations

        if migrations.found_version(con, p) == SCHEMA_VERSION:
            return con
        if not read_only:
            retry_conflicts(lambda: migrations.bring_forward(con, p), what="the schema update")
            return con
    except BaseException:
        con.close()
        raise
    con.close()  # older, opened read-only: brought forward on a short read-write connection
    connect(p, timeout=timeout).close()
    return connect(p, read_only=True, timeout=timeout)


def _open(p: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(p), read_only=read_only)
        except duckdb.Error as exc:
            left = deadline - time.monotonic()
            if not _busy(exc):
                raise StoreError(_not_opened(p, exc)) from None
            if left <= 0:
                raise StoreError(
                    f"{p}: the database is busy (another process is writing, e.g. the "
                    f"dashboard or `frp commit`); tried for {wait:g} s — try again"
                ) from None
            time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, 0.5)


def _not_opened(p: Path, exc: duckdb.Error) -> str:
    if "not a valid DuckDB database file" in str(exc):
        return (
            f"{p}: not an FRP Assign store (not a DuckDB database file; if it was one, it is "
            "damaged: restore it from a backup with `frp restore`); nothing was written"
        )
    if damaged(exc):
        return damaged_message(p, exc)
    return f"{p}: cannot open the database ({first_line(exc)})"


@contextmanager
def open_db(
    path: str | Path,
    *,
    read_only: bool = False,
    timeout: float | None = None,
    schema: bool = True,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection: :func:`connect` (waiting while the file is busy), closed
    at the end of the block so other processes can use the file."""
    con = connect(path, read_only=read_only, timeout=timeout, schema=schema)
    try:
        yield con
    finally:
        con.close()


def retry_conflicts(
    fn: Callable[[], T], *, attempts: int = CONFLICT_ATTEMPTS, what: str = "the change"
) -> T:
    """Run ``fn`` (a whole transaction) again when it collides with a concurrent one.

    DuckDB gives each connection its own transaction and refuses, at the write or at
    COMMIT, one that touched rows another committed meanwhile (``TransactionException``);
    nothing of it was written, so running it again from the start (a commit re-simulates
    on the state as it is now) is safe. After ``attempts`` tries: one-line StoreError.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except duckdb.TransactionException as exc:
            refused = _refused_write(exc)
            if refused:  # the file system said no: trying again cannot mend it
                raise StoreError(f"{refused}; nothing was written") from None
            if attempt == attempts:
                raise StoreError(
                    f"{what} collided with other changes made at the same time "
                    f"{attempts} times; nothing was written — try again "
                    f"({first_line(exc)})"
                ) from None
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing: any exception rolls back every statement of the block."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # already ended (a failed COMMIT, a lost connection)
            pass
        raise
    con.execute("COMMIT")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, **frames: object) -> Iterator[None]:
    """Frames (Polars or Arrow) readable by SQL under the given names inside the block only:
    a failed statement must not leave a stale view for the next write on the connection."""
    try:
        for name, frame in frames.items():
            con.register(name, frame)
        yield
    finally:
        for name in frames:
            try:
                con.unregister(name)
            except duckdb.Error:  # the connection is gone
                pass


def audit(
    con: duckdb.DuckDBPyConnection, actor: str, action: str, subject: str | None, details: str
) -> None:
    con.execute(
        "INSERT INTO audit_log VALUES (nextval('audit_seq'), ?, ?, ?, ?, ?)",
        [clock.now(), actor, action, subject, details],
    )


def _refused_write(exc: duckdb.Error) -> str | None:
    """What the file system refused, when a commit failed for that rather than a collision:
    DuckDB reports a ``.wal`` it cannot create (a read-only folder, no permission) as a
    failed commit, the same exception type as a conflict."""
    found = re.search(r'Cannot open file "([^"]+)": (.+)', first_line(exc))
    if not found:
        return None
    return f"cannot write {found[1]} ({found[2].lower()}): the database's folder must be writable"


def make_folder(folder: Path, for_path: Path, *, probe: bool = False) -> None:
    """Create ``folder`` (with its parents) for ``for_path``; with ``probe``, also prove a
    file can be created in it. A place that cannot be written (read-only, no permission,
    a file where a folder should be) is a one-line StoreError naming the path and cause."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if probe:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{for_path.name}.probe-")
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        cause = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise StoreError(
            f"{for_path}: cannot write in {folder} ({str(cause or exc).lower()}); "
            "nothing was written"
        ) from None


def damaged(exc: BaseException) -> bool:
    """DuckDB's ways of saying the file's bytes are not what it wrote: a block whose
    checksum fails, a file shorter than its blocks."""
    text = str(exc)
    return "Corrupt database file" in text or "Could not read enough bytes" in text


def damaged_message(path: Path, exc: BaseException) -> str:
    return (
        f"{path}: the database file is damaged ({first_line(exc)}); "
        "restore it from a backup with `frp restore`"
    )


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
