"""The run store: one SQLite database per run directory, keyed by (run, problem, attempt index).

A batch job records each finished attempt here; a killed job re-opens the store, asks `done(run_id)` and
does only what is missing, so no attempt is repeated, lost or counted twice. Schema: `docs/store.md`.

Concurrency: one writer (the driver process), any number of readers (WAL lets them read while it
writes). Durability: see `_PRAGMAS`.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.files import atomic_path
from data.run_lock import LOCK_FILENAME, RunLock

FORMAT = "subgoal-run-store"
SCHEMA_VERSION = 1
STORE_FILENAME = "store.sqlite"
STATUSES = ("proved", "failed", "timeout", "unsound", "crashed")  # lean_env.verdict.Status values
_REPO_ROOT = Path(__file__).resolve().parent.parent

# journal_mode=WAL: readers never block the writer, and a commit is one append to the WAL file.
# synchronous=FULL: each commit fsyncs the WAL. Against a killed process (SIGKILL, OOM, Ctrl-C) NORMAL
# would be just as safe: a committed transaction is in the WAL file and SQLite recovers it on the next
# open. FULL adds safety against power loss / kernel panic, where NORMAL may roll back the last commits
# (never corrupts). An attempt costs seconds of GPU and Lean time and a commit's fsync about a
# millisecond, so we buy that durability: a recorded attempt is never redone, even after a power cut.
# Batches (`record_many`) pay one fsync per batch.
# An attempt the machine failed (verdict `infra`: REPL would not start, header import failed, REPL starved of CPU)
# is re-run by a resumed run, at most this many times; after that its failure stands like any other.
INFRA_RETRIES = 2
RETRIES_META = "infra_retries"  # run_meta: {"problem#index": retries so far}
_INFRA = "json_extract(verdict, '$.infra') = 1"

_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")

_SCHEMA = f"""
CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO store_info VALUES ('format', '{FORMAT}'), ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE runs (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  TEXT NOT NULL,
    config   TEXT NOT NULL,
    versions TEXT NOT NULL
);
CREATE TABLE attempts (
    run_id            INTEGER NOT NULL REFERENCES runs(id),
    problem           TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    split             TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL,
    text              TEXT NOT NULL,
    verdict           TEXT NOT NULL,
    strategy          TEXT NOT NULL DEFAULT '',
    model             TEXT NOT NULL DEFAULT '',
    sampling          TEXT NOT NULL DEFAULT '{{}}',
    seed              INTEGER,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    timings           TEXT NOT NULL DEFAULT '{{}}',
    trace             TEXT,
    recorded          TEXT NOT NULL,
    PRIMARY KEY (run_id, problem, idx)
) WITHOUT ROWID;
CREATE INDEX attempts_status ON attempts (run_id, status);
CREATE TABLE run_meta (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""


@dataclass
class Attempt:
    """One attempt at one problem: the Lean text submitted, its verdict and what it cost."""

    problem: str
    index: int
    text: str  # the full Lean text submitted
    status: str  # a Verdict status value
    verdict: dict[str, Any]  # Verdict.to_dict()
    strategy: str = ""
    model: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # wall_s, gen_s, gpu_s, lean_wall_s, lean_cpu_s
    trace: dict[str, Any] | None = None  # decomposition tree etc.
    split: str = ""

    @property
    def proved(self) -> bool:
        return self.status == "proved"

    def to_dict(self) -> dict[str, Any]:
        """A shallow dict (the nested dicts are shared, not copied: `asdict` deep-copies, 10x slower)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class RunInfo:
    id: int
    name: str
    created: str
    config: dict[str, Any]
    versions: dict[str, Any]
    attempts: int  # recorded attempts
    problems: int  # distinct problems with at least one attempt
    proved: int  # distinct problems with at least one proved attempt

    @property
    def run_id(self) -> int:
        return self.id


def collect_versions(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What produced a run: Python and library versions, the git commit, plus `extra` (Lean, Mathlib)."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("subgoal", "torch", "transformers", "vllm", "datasets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if (_REPO_ROOT / ".git").exists():
        try:
            git = subprocess.run(
                ["git", "-C", str(_REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            )
            if git.returncode == 0:
                out["git_commit"] = git.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {**out, **{k: v for k, v in (extra or {}).items() if v is not None}}


def store_path(path: str | Path) -> Path:
    """The SQLite file for `path`: itself when it names a file, else `<dir>/store.sqlite`."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix not in (".sqlite", ".sqlite3", ".db")):
        return path / STORE_FILENAME
    return path


def check_run_directory(path: str | Path, flag: str = "--out") -> Path:
    """`path`, if it can be a run directory (missing, or a directory); one clear error when it names a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{flag} {path} is an existing file, not a run directory; give a directory")
    return path


def run_directory(path: str | Path, flag: str = "--out") -> Path:
    """`path` as a run directory, created if missing; one clear error when it names a file."""
    path = check_run_directory(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{flag} {path}: cannot create the run directory: {e.strerror}") from None
    return path


def remove_if_empty(run_dir: str | Path) -> bool:
    """Remove a run directory that holds nothing but a store with no attempt in it (what a failed first start
    leaves); True when removed. Only the store's own files are deleted, and the directory only when empty."""
    run_dir = Path(run_dir)
    store = run_dir / STORE_FILENAME
    if store.exists():
        try:
            with RunStore(store, create=False, lock=False) as s:
                if any(info.attempts for info in s.runs()):
                    return False
        except DataError:
            return False
    for name in (STORE_FILENAME, f"{STORE_FILENAME}-wal", f"{STORE_FILENAME}-shm", LOCK_FILENAME):
        (run_dir / name).unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:  # something else is in it: not ours to delete
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """Attempts of one or more runs in one SQLite file (WAL, one writer). Use as a context manager."""

    def __init__(self, path: str | Path, create: bool = True, lock: bool | None = None):
        """`create`: the writer's mode (make the store if missing). `lock` (default: `create`): hold the run
        directory's `RunLock` while open, so a second writer on the same directory is refused."""
        self.path = store_path(path)
        if not self.path.exists():
            if not create:
                raise DataError(f"no run store at {path} (expected {self.path})")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run_lock = RunLock(self.path.parent).acquire() if (create if lock is None else lock) else None
        self._lock = threading.Lock()  # one connection, shared by the threads of the writer process
        try:
            if not self.path.exists():
                self._create()
            elif self.path.stat().st_size == 0:  # never one of ours (`_create`): a truncated or foreign file
                raise DataError(f"{self.path} is empty (0 bytes): not a run store any more; move it away to start "
                                "the run afresh (its report and proofs stay as they are until then)")
            try:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            except sqlite3.Error as e:
                raise DataError(f"{self.path}: cannot open run store: {e}") from None
            try:
                self._open()
            except BaseException:
                self._db.close()
                raise
        except BaseException:
            self._release_run_lock()
            raise

    def _release_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _create(self) -> None:
        """A new store, made whole beside its place and linked in: a store file is never seen half made (a
        zero-byte `store.sqlite` can then only be damage, and is refused)."""
        tmp = self.path.with_name(f".{self.path.name}.new{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.executescript(f"BEGIN; {_SCHEMA}; COMMIT;")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)  # never over a store another process made meanwhile
            except FileExistsError:
                pass
        except (OSError, sqlite3.Error) as e:
            raise DataError(f"{self.path}: cannot create the run store: {e}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _open(self) -> None:
        try:
            if not self._tables():
                for pragma in _PRAGMAS:  # journal_mode can only change outside a transaction
                    self._db.execute(pragma)
                with self._tx() as db:
                    if not self._tables():  # another process may have created it meanwhile
                        for stmt in _SCHEMA.split(";"):
                            if stmt.strip():
                                db.execute(stmt)
            self._check_schema()
            for pragma in _PRAGMAS:  # only now: never switch a foreign database to WAL
                self._db.execute(pragma)
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: corrupt run store or not an SQLite file ({e})") from None

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _check_schema(self) -> None:
        tables = self._tables()
        if "store_info" not in tables:
            raise DataError(f"{self.path}: not a Subgoal run store (an SQLite file with other tables)")
        info = dict(self._db.execute("SELECT key, value FROM store_info").fetchall())
        if info.get("format") != FORMAT:
            raise DataError(f"{self.path}: not a Subgoal run store (format {info.get('format')!r})")
        version = info.get("schema_version", "")
        if not version.isdigit() or not {"runs", "attempts", "run_meta"} <= tables:
            raise DataError(
                f"{self.path}: corrupt run store (schema version {version!r}, tables {sorted(tables)})"
            )
        if int(version) > SCHEMA_VERSION:
            raise DataError(
                f"{self.path}: run store schema v{version} is newer than this Subgoal's (v{SCHEMA_VERSION}); upgrade"
            )

    # ------------------------------------------------------------------------------------- plumbing

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # take the write lock now: no read-to-write upgrade deadlock
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as e:
                raise DataError(f"{self.path}: corrupt run store ({e})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._release_run_lock()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ runs

    def start_run(self, name: str, config: dict[str, Any], versions: dict[str, Any] | None = None) -> int:
        """The id of run `name`, created with its config and versions if new (same name = resume).

        `versions` adds what only the caller knows (`lean`, `mathlib`) to the library versions and git commit.
        """
        if existing := self.run_id(name):
            return existing
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (name, created, config, versions) VALUES (?, ?, ?, ?)",
                (name, _now(), json.dumps(config, default=str), json.dumps(collect_versions(versions))),
            )
        run_id = self.run_id(name)
        assert run_id is not None
        return run_id

    def run_id(self, name: str) -> int | None:
        rows = self._query("SELECT id FROM runs WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def runs(self) -> list[RunInfo]:
        rows = self._query(
            """SELECT r.id, r.name, r.created, r.config, r.versions,
                      (SELECT count(*) FROM attempts a WHERE a.run_id = r.id),
                      (SELECT count(DISTINCT problem) FROM attempts a WHERE a.run_id = r.id),
                      (SELECT count(DISTINCT problem) FROM attempts a WHERE a.run_id = r.id AND status = 'proved')
               FROM runs r ORDER BY r.id"""
        )
        return [
            RunInfo(i, n, c, json.loads(cfg), json.loads(v), a, p, pr) for i, n, c, cfg, v, a, p, pr in rows
        ]

    def run(self, run: int | str | None = None) -> RunInfo:
        """One run by id or name; None means the only run in the store."""
        infos = self.runs()
        if run is None:
            if len(infos) != 1:
                names = ", ".join(r.name for r in infos) or "none"
                raise DataError(f"{self.path}: {len(infos)} runs in this store ({names}); name one")
            return infos[0]
        for info in infos:
            if run in (info.id, info.name):
                return info
        raise DataError(f"{self.path}: no run {run!r}; runs: {', '.join(r.name for r in infos) or 'none'}")

    def set_meta(self, run_id: int, key: str, value: Any) -> None:
        """Set a per-run value (JSON), e.g. the training loop's current round."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                (run_id, key, json.dumps(value)),
            )

    def get_meta(self, run_id: int, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, key))
        return json.loads(rows[0][0]) if rows else default

    # -------------------------------------------------------------------------------------- attempts

    @staticmethod
    def _row(run_id: int, a: Attempt) -> tuple:
        if a.status not in STATUSES:
            raise ValueError(f"attempt {a.problem}#{a.index}: status {a.status!r} is not one of {STATUSES}")
        return (
            run_id, a.problem, int(a.index), a.split, a.status, a.text, json.dumps(a.verdict), a.strategy,
            a.model, json.dumps(a.sampling), a.seed, int(a.prompt_tokens), int(a.completion_tokens),
            json.dumps(a.timings), None if a.trace is None else json.dumps(a.trace), _now(),
        )  # fmt: skip

    # Idempotence: a second write of a key is skipped. ON CONFLICT (key) DO NOTHING rather than INSERT OR
    # IGNORE, which would also silently drop rows that break NOT NULL/foreign keys and report them as "done".
    _INSERT = (
        "INSERT INTO attempts VALUES ("
        + ", ".join("?" * 16)
        + ") ON CONFLICT (run_id, problem, idx) DO NOTHING"
    )

    def record(self, run_id: int, attempt: Attempt) -> bool:
        """Store one attempt; False (and nothing written) when (run, problem, index) is already there, unless
        the row there is an infrastructure failure being retried (see `done`), which the new attempt replaces."""
        return self.record_many(run_id, [attempt]) == 1

    def record_many(self, run_id: int, attempts: Iterable[Attempt]) -> int:
        """Store many attempts in one transaction (all or none); returns how many were new (or retried)."""
        rows = [self._row(run_id, a) for a in attempts]
        with self._tx() as db:
            new, taken = 0, []
            for row in rows:
                inserted = db.execute(self._INSERT, row).rowcount
                new += inserted
                if not inserted:
                    taken.append(row)
            # Only a key already there can be a retry: the run's infrastructure failures are looked up for those
            # alone (a scan of the whole run per transaction made a run's writes quadratic in its attempts).
            retrying = self._retryable(db, run_id) if taken else set()
            for row in taken:
                key = (row[1], row[2])
                if key in retrying:  # the machine failed this attempt before: the retry takes its place
                    retrying.discard(key)
                    db.execute(f"DELETE FROM attempts WHERE run_id = ? AND problem = ? AND idx = ? AND {_INFRA}",
                               (run_id, *key))
                    self._bump_retries(db, run_id, key)
                    new += db.execute(self._INSERT, row).rowcount
            return new

    # ---------------------------------------------------------------------------------------- audits
    # Kernel-replay verdicts (`subgoal lean audit`), beside the attempt's own verdict. The table is created by
    # the first audit, so stores written before it existed stay valid and unchanged.
    _AUDITS = (
        "CREATE TABLE IF NOT EXISTS audits (run_id INTEGER NOT NULL REFERENCES runs(id), problem TEXT NOT NULL, "
        "idx INTEGER NOT NULL, checker TEXT NOT NULL, accepted INTEGER, detail TEXT NOT NULL, "
        "recorded TEXT NOT NULL, PRIMARY KEY (run_id, problem, idx, checker)) WITHOUT ROWID"
    )

    def record_audit(self, run_id: int, problem: str, index: int, checker: str, accepted: bool | None,
                     detail: str) -> None:
        """Store (or replace) a checker's verdict on one attempt; `accepted` None: the checker could not run."""
        with self._tx() as db:
            db.execute(self._AUDITS)
            db.execute(
                "INSERT INTO audits VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, problem, idx, checker) "
                "DO UPDATE SET accepted = excluded.accepted, detail = excluded.detail, recorded = excluded.recorded",
                (run_id, problem, int(index), checker, None if accepted is None else int(accepted), detail, _now()),
            )

    def audits(self, run_id: int, checker: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """(problem, index) -> {"checker", "accepted", "detail", "recorded"} of the audited attempts."""
        if "audits" not in self._tables_locked():
            return {}
        where, args = ("run_id = ?", (run_id,)) if checker is None else ("run_id = ? AND checker = ?",
                                                                          (run_id, checker))
        rows = self._query(f"SELECT problem, idx, checker, accepted, detail, recorded FROM audits WHERE {where}", args)
        return {(p, i): {"checker": c, "accepted": None if a is None else bool(a), "detail": d, "recorded": r}
                for p, i, c, a, d, r in rows}

    def _tables_locked(self) -> set[str]:
        with self._lock:
            return self._tables()

    def done(self, run_id: int) -> set[tuple[str, int]]:
        """Keys a run has finished: every recorded attempt but the infrastructure failures (the verdict's
        `infra`: the machine failed, not the proof) that have been retried fewer than `INFRA_RETRIES` times."""
        keys = {(p, i) for p, i in self._query("SELECT problem, idx FROM attempts WHERE run_id = ?", (run_id,))}
        with self._lock:
            return keys - self._retryable(self._db, run_id)

    def _retryable(self, db: sqlite3.Connection, run_id: int) -> set[tuple[str, int]]:
        tried = self._retries(db, run_id)
        rows = db.execute(f"SELECT problem, idx FROM attempts WHERE run_id = ? AND {_INFRA}", (run_id,)).fetchall()
        return {(p, i) for p, i in rows if tried.get(f"{p}#{i}", 0) < INFRA_RETRIES}

    @staticmethod
    def _retries(db: sqlite3.Connection, run_id: int) -> dict[str, int]:
        row = db.execute("SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, RETRIES_META)).fetchone()
        return json.loads(row[0]) if row else {}

    def _bump_retries(self, db: sqlite3.Connection, run_id: int, key: tuple[str, int]) -> None:
        tried = self._retries(db, run_id)
        tried[f"{key[0]}#{key[1]}"] = tried.get(f"{key[0]}#{key[1]}", 0) + 1
        db.execute("INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT (run_id, key) "
                   "DO UPDATE SET value = excluded.value", (run_id, RETRIES_META, json.dumps(tried)))

    _COLUMNS = (
        "problem, idx, text, status, verdict, strategy, model, sampling, seed, prompt_tokens, "
        "completion_tokens, timings, trace, split"
    )

    def _rows(self, run_id: int, problem: str | None = None, status: str | None = None) -> Iterator[tuple]:
        """Raw rows (`_COLUMNS`, JSON still text) ordered by (problem, index), read in pages of 1000 so a
        large run is never all in memory."""
        where, args = "run_id = ?", [run_id]
        if problem is not None:
            where, args = where + " AND problem = ?", [*args, problem]
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        last: tuple[str, int] = ("", -1)
        while True:
            page = self._query(
                f"SELECT {self._COLUMNS} FROM attempts WHERE {where} AND (problem, idx) > (?, ?) "
                "ORDER BY problem, idx LIMIT 1000",
                (*args, *last),
            )
            yield from page
            if len(page) < 1000:
                return
            last = (page[-1][0], page[-1][1])

    def iter_attempts(
        self, run_id: int, problem: str | None = None, status: str | None = None
    ) -> Iterator[Attempt]:
        """Attempts ordered by (problem, index), streamed."""
        return (_attempt(row) for row in self._rows(run_id, problem, status))

    def attempts(self, run_id: int, problem: str | None = None, status: str | None = None) -> list[Attempt]:
        return list(self.iter_attempts(run_id, problem, status))

    # ---------------------------------------------------------------------------------------- export

    def export_jsonl(self, run_id: int, path: str | Path) -> int:
        """One `Attempt.to_dict()` per line; written to a temporary file and renamed (never half a file)."""
        n = 0
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for a in self.iter_attempts(run_id):
                fh.write(json.dumps(a.to_dict(), ensure_ascii=False) + "\n")
                n += 1
        return n

    def _arrow_table(self, run_id: int) -> Any:
        import pyarrow as pa

        schema = pa.schema([
            ("problem", pa.string()), ("index", pa.int64()), ("split", pa.string()), ("status", pa.string()),
            ("text", pa.string()), ("strategy", pa.string()), ("model", pa.string()), ("seed", pa.int64()),
            ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()),
            # free-form dicts as JSON text: their keys differ between strategies and versions
            ("verdict", pa.string()), ("sampling", pa.string()), ("timings", pa.string()), ("trace", pa.string()),
        ])  # fmt: skip
        names = [
            c.strip() for c in self._COLUMNS.split(",")
        ]  # the dicts stay the JSON text they are stored as
        columns = list(zip(*self._rows(run_id), strict=True)) or [()] * len(names)
        by_name = {"index" if n == "idx" else n: list(col) for n, col in zip(names, columns, strict=True)}
        return pa.Table.from_pydict({n: by_name[n] for n in schema.names}, schema=schema)

    def export_parquet(self, run_id: int, path: str | Path) -> int:
        """Parquet, one row per attempt; `verdict`, `sampling`, `timings`, `trace` as JSON text."""
        import pyarrow.parquet as pq

        table = self._arrow_table(run_id)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return table.num_rows

    def to_dataset(self, run_id: int) -> Any:
        """The run as a `datasets.Dataset` (same columns as the Parquet export)."""
        import datasets

        return datasets.Dataset(self._arrow_table(run_id))


def _attempt(row: tuple) -> Attempt:
    problem, idx, text, status, verdict, strategy, model, sampling, seed, pt, ct, timings, trace, split = row
    return Attempt(
        problem=problem, index=idx, text=text, status=status, verdict=json.loads(verdict), strategy=strategy,
        model=model, sampling=json.loads(sampling), seed=seed, prompt_tokens=pt, completion_tokens=ct,
        timings=json.loads(timings), trace=None if trace is None else json.loads(trace), split=split,
    )  # fmt: skip
