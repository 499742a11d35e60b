"""Superset as a local process: its own virtualenv (superset/.venv, `make superset-install`),
metadata initialisation in SUPERSET_HOME, gunicorn in the background. Used by `dnma up`, the
tests and the benchmark; never imports Superset (it lives in another venv).

What Superset writes in its home (metadata with password hashes, the action log, caches) is its
owner's alone whatever the caller's umask: the children run with umask 077, and what an older
version left looser is tightened, and its action log scrubbed of secrets, when the server starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

import httpx

from dnma_superset import event_log

SUPERSET_DIR = Path(__file__).resolve().parent.parent
REPO = SUPERSET_DIR.parent
VENV = SUPERSET_DIR / ".venv"
BIN = VENV / "bin"
CONFIG = SUPERSET_DIR / "superset_config.py"
# `superset db upgrade && superset init` takes ~30 s; the result is the same for every home, so
# the first one is kept here (inside the gitignored venv) and copied afterwards.
TEMPLATE_DB = VENV / "dnma-metadata-template.db"
UMASK = 0o077
# gunicorn's request-line and header-field limits (its defaults are 4094 and 8190): the DNMA
# dashboards' URLs carry a short native-filter state key (`native_filters_key`), never the filters
# themselves, and chart queries are POST bodies; an oversized line is refused with 414 / 400 as
# soon as the limit is read instead of holding a worker while megabytes arrive.
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELD_SIZE = 8190


def installed() -> bool:
    return (BIN / "superset").exists() and (BIN / "gunicorn").exists()


def install() -> None:
    """`make superset-install` (a stamp makes it a no-op once done)."""
    subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "superset-install"], check=True)


def environment(home: Path, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update({
        "SUPERSET_CONFIG_PATH": str(CONFIG),
        "SUPERSET_HOME": str(home),
        "SUPERSET_SECRET_KEY": secret_key,
        "FLASK_APP": "superset.app:create_app()",
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "SUPERSET_LOG_LEVEL": env.get("SUPERSET_LOG_LEVEL", "WARNING"),
    })
    return env


def owner_only(home: Path) -> None:
    """Superset's home, directories 0700 and files 0600 at most (group and other bits removed)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o7777
        if mode & 0o077:
            path.chmod(mode & ~0o077)


def _open_log(log: Path) -> BinaryIO:
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def init_metadata(home: Path, env: dict[str, str], admin_user: str, admin_password: str, log: Path) -> None:
    """Create the SQLite metadata (schema, roles, admin user) unless it is already there."""
    owner_only(home)
    db = home / "superset.db"
    if db.exists():
        return
    with _open_log(log) as out:
        def run(*args: str) -> None:
            subprocess.run([str(BIN / "superset"), *args], env=env, stdout=out, stderr=out, check=True,
                           cwd=home, umask=UMASK)

        if TEMPLATE_DB.exists():
            shutil.copyfile(TEMPLATE_DB, db)
            db.chmod(0o600)
        else:
            run("db", "upgrade")
            run("init")
            tmp = TEMPLATE_DB.with_suffix(".tmp")
            shutil.copyfile(db, tmp)
            tmp.replace(TEMPLATE_DB)
        run("fab", "create-admin", "--username", admin_user, "--firstname", "Admin", "--lastname", "DNMA",
            "--email", f"{admin_user}@dnma.invalid", f"--password={admin_password}")  # may start with "-"


def start(home: Path, env: dict[str, str], port: int, log: Path, *, host: str = "127.0.0.1",
          workers: int = 2) -> subprocess.Popen[bytes]:
    """gunicorn in its own session (so `dnma down` can stop the whole group), after the home's
    modes are tightened and its action log scrubbed (Superset is not running yet: the scrub may
    rewrite the file)."""
    owner_only(home)
    event_log.scrub_database(home / "superset.db")
    out = _open_log(log)
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "--workers", str(workers), "--threads", "4", "--worker-class", "gthread",
         "--timeout", "120", "--bind", f"{host}:{port}", "--limit-request-line", str(LIMIT_REQUEST_LINE),
         "--limit-request-field_size", str(LIMIT_REQUEST_FIELD_SIZE), "superset.app:create_app()"],
        env=env, cwd=home, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True, umask=UMASK,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Superset exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"Superset not ready at {url} after {timeout:.0f}s")
