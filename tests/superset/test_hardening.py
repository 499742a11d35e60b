"""Hardening of the real Superset (issue #19): its action log keeps no secret (new rows scrubbed
as they are written, old rows scrubbed when the server starts), its files are its owner's alone,
and gunicorn refuses an oversized request line at once."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path

import httpx
from dnma_superset import server
from harness import free_port

from .conftest import SupersetHandle


def _secrets(superset: SupersetHandle, db: sqlite3.Connection) -> list[str]:
    """What must never be in the action log: the reader's password, every user's password (clear
    and hashed)."""
    hashes = [row[0] for row in db.execute("SELECT password FROM ab_user") if row[0]]
    assert hashes
    return [superset.stack.ch_password, superset.admin_password, *superset.users().values(), *hashes]


def _read_only(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'superset.db'}?mode=ro", uri=True)


def test_action_log_keeps_no_secret(superset: SupersetHandle) -> None:
    """Provisioning imported the bundle with the reader's password (the `passwords` form field)
    and created users with passwords: Superset logged those requests, without the secrets."""
    with _read_only(superset.home) as db:
        secrets = _secrets(superset, db)
        rows = [(action, text or "") for action, text in db.execute("SELECT action, json FROM logs")]
    imports = [text for _, text in rows if "assets/import" in text]
    assert imports, sorted({action for action, _ in rows})  # the import was logged, so the check means something
    leaks = [(action, text[:200]) for action, text in rows if any(s in text for s in secrets)]
    assert leaks == []


def test_superset_files_are_its_owners_alone(superset: SupersetHandle) -> None:
    """Whatever umask the starting process has, Superset's metadata, caches and log under its home
    are 0600 and its directories 0700 (the metadata holds password hashes, the log what users did)."""
    loose = []
    checked = 0
    for path in [superset.home, *superset.home.rglob("*")]:
        if path.is_symlink():
            continue
        checked += 1
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{oct(mode)} {path.relative_to(superset.home.parent)}")
    assert checked > 3 and (superset.home / "superset.db").exists()
    assert loose == []


def test_server_start_scrubs_what_an_older_version_logged(superset: SupersetHandle, tmp_path: Path) -> None:
    """A metadata database from before the scrub: the import's `passwords` field and a user's
    password hash in clear in `logs`, the file world-readable. Starting Superset over it removes
    both secrets (from the rows and from the file's free pages) and tightens the modes."""
    home = tmp_path / "superset"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    src, dst = _read_only(superset.home), sqlite3.connect(home / "superset.db")
    try:
        src.backup(dst)
        secrets = _secrets(superset, dst)
        password, user_hash = superset.stack.ch_password, secrets[-1]
        # The row Superset 6.1's DBEventLogger wrote for the assets import, and one holding what
        # any logged form field or JSON body may: a password hash, a token deep inside.
        planted = [
            ("ImportExportRestApi.import_", {"path": "/api/v1/assets/import/", "object_ref": "ImportExportRestApi.import_",
                                             "passwords": json.dumps({"databases/DNMA_ClickHouse.yaml": password})}),
            ("UserRestApi.put", {"path": "/api/v1/security/users/2", "password": user_hash,
                                 "rison": {"nested": [{"access_token": "tok-" + password}]}}),
        ]
        for action, record in planted:
            dst.execute("INSERT INTO logs (action, json, dttm) VALUES (?, ?, CURRENT_TIMESTAMP)",
                        (action, json.dumps(record)))
        dst.commit()
        dst.execute("PRAGMA journal_mode = DELETE")  # everything in the one file, as a copied database
    finally:
        src.close()
        dst.close()
    (home / "superset.db").chmod(0o644)
    assert password.encode() in (home / "superset.db").read_bytes()

    log = home / "superset.log"
    env = server.environment(home, "hardening-test-secret-key")
    port = free_port()
    proc = server.start(home, env, port, log, workers=1)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}", proc)
        with _read_only(home) as db:
            rows = {action: text for action, text in db.execute(
                "SELECT action, json FROM logs WHERE action IN ('ImportExportRestApi.import_', 'UserRestApi.put')")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert set(rows) == {"ImportExportRestApi.import_", "UserRestApi.put"}  # scrubbed, not deleted
    assert json.loads(rows["ImportExportRestApi.import_"])["path"] == "/api/v1/assets/import/"
    assert json.loads(rows["UserRestApi.put"])["path"] == "/api/v1/security/users/2"
    for text in rows.values():
        assert password not in text and user_hash not in text
    assert password.encode() not in (home / "superset.db").read_bytes()
    assert stat.S_IMODE((home / "superset.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_an_oversized_request_line_is_refused_at_once(superset: SupersetHandle) -> None:
    """A 16 MiB URL is refused (4xx) within seconds instead of holding a worker while it is read,
    and Superset keeps serving."""
    host, port = "127.0.0.1", int(superset.url.rsplit(":", 1)[1])
    answer = bytearray()
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:

        def read() -> None:  # the answer may come while the line is still being sent
            try:
                while len(answer) < 64 and (data := sock.recv(4096)):
                    answer.extend(data)
            except OSError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            sock.sendall(b"GET /superset/dashboard/national/?x=")
            for _ in range(256):  # 16 MiB
                sock.sendall(b"a" * 65536)
            sock.sendall(f" HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        except OSError:
            pass  # refused and closed before the whole line was sent
        reader.join(timeout=10)
    elapsed = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    assert status in (400, 414), bytes(answer[:200])
    assert elapsed < 10, elapsed
    assert httpx.get(f"{superset.url}/health", timeout=10).status_code == 200
