"""The named jobs a command runs: in the live loader through its admin channel (aggregator/admin.py)
or, with no loader, in the command's own process on the storage it opens. Same code, same result.

A job is a name, typed arguments (validated here, whoever calls) and a function
`fn(ctx: JobContext, **args) -> int` (the exit code) found by its "module:function" path when it
runs, so that a module registers a job with one line in JOBS and this file imports none of them.
A job writes its output with `ctx.out` (stdout, or the export's file) and its progress with
`ctx.err`; it opens ClickHouse with `ctx.client()`. Write jobs run one at a time in the loader.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from dnma import admin
from dnma.settings import Settings

MAX_TEXT = 1000  # characters of a str argument
MAX_ITEMS = 1000  # items of a list argument


@dataclass(frozen=True)
class Arg:
    """One typed argument: str, int, bool, date (ISO), path (absolute), str_list, date_list, path_list."""

    kind: str
    required: bool = False
    choices: Callable[[], tuple[str, ...]] | None = None  # the allowed values of a str, when read


@dataclass(frozen=True)
class Job:
    target: str  # "module:function", imported when the job runs
    args: dict[str, Arg] = field(default_factory=dict)
    write: bool = True  # writes the storage: one at a time in the loader
    # How it passes the loader's write gate (aggregator/write_gate.py): "writing" as a batch does (a
    # backup waits for it), "closed" (loading and side duties wait until it ends: a migration may
    # rebuild `hits`), "none" (reads; or closes the gate itself when it needs, as a backup).
    gate: str = "writing"


def _datasets() -> tuple[str, ...]:
    # Imported when asked: the modules that define jobs import this one (no import cycle).
    return tuple(sorted(importlib.import_module("aggregator.exports").DATASETS))


# The registry. A new job: its function `fn(ctx, **args) -> int` in its module, and one line here.
JOBS: dict[str, Job] = {
    "ping": Job("aggregator.job_functions:ping_job", write=False, gate="none"),  # is the loader there?
    "migrate": Job("aggregator.job_functions:migrate_job", gate="closed"),
    "aggregate": Job("aggregator.job_functions:aggregate_job", {"days": Arg("date_list")}),
    "checks.run": Job("aggregator.job_functions:checks_run_job",
                      {"checks": Arg("str_list"), "window": Arg("str"), "now": Arg("str")}),
    "checks.ack": Job("aggregator.job_functions:checks_ack_job",
                      {"check": Arg("str", required=True), "scope_kind": Arg("str", required=True),
                       "scope_value": Arg("str", required=True), "by": Arg("str", required=True),
                       "note": Arg("str")}),
    "referentiel.load": Job("aggregator.job_functions:referentiel_load_job",
                            {"files": Arg("path_list", required=True), "replace": Arg("bool"), "annee": Arg("int")}),
    "referentiel.fetch": Job("aggregator.referentiel:fetch_job",
                             {"annee": Arg("int"), "departements": Arg("str_list"), "base_url": Arg("str")}),
    "export": Job("aggregator.job_functions:export_job",
                  {"dataset": Arg("str", required=True, choices=_datasets), "debut": Arg("date", required=True),
                   "fin": Arg("date", required=True)}, write=False, gate="none"),
    # Filled by their own modules (a missing function answers "not available"):
    # aggregator/backup.py: def backup_job(ctx, dir: Path) -> int   (dnma backup DIR); in the loader
    # ctx.gate is its write gate, to close around the snapshot (None when the command runs alone)
    "backup": Job("aggregator.backup:backup_job", {"dir": Arg("path", required=True)}, gate="none"),
    # aggregator/publication.py: def publish_job(ctx, week: str | None) -> int   (publish a week now)
    "export.weekly": Job("aggregator.publication:publish_job", {"week": Arg("str")}),
    # aggregator/quarantine.py: apply the quarantine's bounds now (the loader does every minute)
    "quarantine.trim": Job("aggregator.quarantine:trim_job"),
}


class BadRequest(ValueError):
    """An unknown job or arguments that do not fit its schema: a clear answer, never a traceback."""


def validate(name: Any, args: Any) -> tuple[Job, dict[str, Any]]:
    """The job and its arguments converted to their types; BadRequest says what is wrong."""
    if not isinstance(name, str) or name not in JOBS:
        shown = name[:60] if isinstance(name, str) else type(name).__name__
        raise BadRequest(f"unknown job {shown!r}; known: {', '.join(sorted(JOBS))}")
    job = JOBS[name]
    if not isinstance(args, dict):
        raise BadRequest(f"job {name}: args must be an object")
    unknown = sorted(set(args) - set(job.args))
    if unknown:
        raise BadRequest(f"job {name}: unknown argument(s) {', '.join(str(u)[:40] for u in unknown[:5])}; "
                         f"expected: {', '.join(job.args) or 'none'}")
    out: dict[str, Any] = {}
    for key, spec in job.args.items():
        value = args.get(key)
        if value is None:
            if spec.required:
                raise BadRequest(f"job {name}: argument {key} is required")
            out[key] = None
            continue
        try:
            out[key] = _convert(spec.kind, value)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"job {name}: argument {key}: {exc}") from None
        if spec.choices is not None and out[key] not in spec.choices():
            raise BadRequest(f"job {name}: argument {key}: {str(out[key])[:60]!r} is not one of "
                             f"{', '.join(spec.choices())}")
    return job, out


def _convert(kind: str, value: Any) -> Any:
    if kind.endswith("_list"):
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise TypeError(f"expected a list of at most {MAX_ITEMS} items")
        return [_convert(kind[:-5], v) for v in value]
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("expected an integer")
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a {kind} as a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT * 4 or "\x00" in value:
        raise ValueError("too long, or holds a NUL")
    if kind == "str":
        if len(value) > MAX_TEXT:
            raise ValueError(f"longer than {MAX_TEXT} characters")
        return value
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "path":
        path = Path(value)
        if not path.is_absolute():
            raise ValueError("expected an absolute path")
        return path
    raise TypeError(f"unknown argument kind {kind}")


def resolve(name: str, job: Job) -> Callable[..., int]:
    module, _, function = job.target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError):
        raise BadRequest(f"job {name} is not available in this version ({job.target} missing)") from None
    return fn  # type: ignore[no-any-return]


# --- running a job ------------------------------------------------------------------------------


@dataclass
class JobContext:
    """What a job gets: settings, output, a stop signal, and the loader's hooks when it runs there."""

    settings: Settings
    out: admin.Write
    err: admin.Write
    report: admin.Report = admin._ignore  # figures for the command (an export's rows)
    stop: threading.Event = field(default_factory=threading.Event)
    in_loader: bool = False
    # In the loader: its write gate (aggregator/write_gate.py), and what inserts its pending batch
    # before a migration rebuilds `hits` (aggregator.migrate.Settle).
    gate: Any = None
    settle: Any = None
    _client: Any = None

    def client(self) -> Any:
        if self._client is None:
            if self.in_loader:
                from dnma.chclient import get_client

                self._client = get_client(self.settings)  # its own client, as the side duties
            else:
                self._client = admin.open_storage(self.settings)
        return self._client

    @contextlib.contextmanager
    def passing_gate(self, name: str, how: str) -> Iterator[None]:
        """The job's block, under the loader's write gate as its registry line says."""
        if self.gate is None or how == "none":
            yield
        elif how == "writing":
            with self.gate.writing():
                yield
        else:
            from aggregator.loader_logs import log_event

            with self.gate.closed():
                log_event("loading_paused", job=name)  # the collector keeps acknowledging into the spool
                try:
                    yield
                finally:
                    log_event("loading_resumed", job=name)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def run_job(ctx: JobContext, name: str, args: Any) -> int:
    """Validate and run; the caller catches BadRequest."""
    job, values = validate(name, args)
    fn = resolve(name, job)
    try:
        with ctx.passing_gate(name, job.gate):
            return int(fn(ctx, **values) or 0)
    finally:
        ctx.close()


def _print_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_command(name: str, args: dict[str, Any], out: admin.Write = _print_out, err: admin.Write = _print_err,
                report: admin.Report = admin._ignore) -> int:
    """What a `dnma` command does: the job in the live loader when one answers, else here on the
    storage this process opens (admin.Unavailable when neither can serve it)."""
    from dnma.settings import get_settings  # read when called: tests replace it

    settings = get_settings()
    code = admin.delegate(settings, name, args, out, err, report)
    if code is not None:
        return code
    try:
        return run_job(JobContext(settings, out, err, report), name, args)
    except BadRequest as exc:
        err(str(exc))
        return 2


class JobFailed(Exception):
    """A job ended with a non-zero exit code (it said why on stderr)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit code {code}")
        self.code = code


def export_csv(dataset: str, debut: date, fin: date, out: IO[str]) -> int:
    """The export's CSV (header and rows) written to `out`, streamed from the live loader when one
    runs (no reader time limit), else computed here; returns the rows. JobFailed on a failure."""
    figures: dict[str, Any] = {}
    code = run_command("export", {"dataset": dataset, "debut": debut.isoformat(), "fin": fin.isoformat()},
                       out=out.write, report=figures.update)
    if code:
        raise JobFailed(code)
    return int(figures.get("rows", 0))
