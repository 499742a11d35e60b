"""`dnma superset provision`: point the bundle's database at this deployment's ClickHouse, import
the asset bundle through Superset's REST API, then create perimeter roles, RLS rules and users
from superset/perimeters.yaml. Idempotent: a second run finds everything in place and changes nothing
(the assets import overwrites with identical content).

Runs from the project venv (httpx, pyyaml); never imports Superset itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from dnma_superset import assets_yaml
from dnma_superset.charts import query_context
from dnma_superset.dashboards import DASHBOARDS
from dnma_superset.datasets import DATASETS, Dataset
from dnma_superset.identity import DATABASE_NAME

PERIMETERS_FILE = Path(__file__).resolve().parent.parent / "perimeters.yaml"
ROLE_PREFIX = "DNMA — "
READER_ROLE = "DNMA lecteur"  # dataset access shared by every perimeter role (rows then cut by RLS)
DENY_ALL = "1 = 0"
RLS_PREFIX = "dnma:"
# "site": an ENT site's editor (value: the site id), who sees the Marquage dashboard of that site.
LEVELS = ("national", "region", "academie", "departement", "projet", "site")


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RolePerimeter:
    """A Superset role's perimeter: its rows are those at `level` = `value` (RLS)."""

    name: str
    level: str
    value: str = ""

    @property
    def role(self) -> str:
        return ROLE_PREFIX + self.name


@dataclass(frozen=True)
class SupersetUser:
    """A Superset login provisioned with the roles of its perimeters (names of RolePerimeter)."""

    username: str
    name: str
    perimeters: tuple[str, ...]
    example: bool = False


@dataclass(frozen=True)
class RolePerimeters:
    """superset/perimeters.yaml: the role perimeters and the Superset users holding them."""

    perimeters: tuple[RolePerimeter, ...]
    users: tuple[SupersetUser, ...]

    @classmethod
    def load(cls, path: Path = PERIMETERS_FILE) -> RolePerimeters:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        perimeters = tuple(RolePerimeter(p["name"], p["level"], str(p.get("value", ""))) for p in doc["perimeters"])
        for p in perimeters:
            if p.level not in LEVELS:
                raise ValueError(f"perimeter {p.name!r}: unknown level {p.level!r} (one of {LEVELS})")
            if p.level != "national" and not p.value:
                raise ValueError(f"perimeter {p.name!r}: a {p.level} perimeter needs a value")
        names = {p.name for p in perimeters}
        users = tuple(
            SupersetUser(u["username"], u.get("name", u["username"]), tuple(u.get("perimeters", [])),
                         bool(u.get("example")))
            for u in doc.get("users", [])
        )
        for u in users:
            unknown = set(u.perimeters) - names
            if unknown:
                raise ValueError(f"user {u.username!r}: unknown perimeters {sorted(unknown)}")
        return cls(perimeters, users)


def sql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rls_clause(dataset: Dataset, perimeter: RolePerimeter) -> str:
    template = dataset.perimeter.get(perimeter.level)
    return template.format(value=sql_literal(perimeter.value)) if template else DENY_ALL


def database_uri(settings: Any) -> tuple[str, str]:
    """(URI with the password masked as the bundle expects, password) for this deployment."""
    if settings.embedded:
        user, password = settings.ch_http_user, settings.ch_http_password
        host, port, database = "127.0.0.1", settings.ch_http_port, settings.clickhouse_database
    else:
        url = httpx.URL(settings.clickhouse_dsn)
        user, password = url.username or "default", url.password or ""
        host, port = url.host, url.port or 8123
        database = url.path.strip("/") or settings.clickhouse_database
    return f"clickhousedb://{quote(user)}:XXXXXXXXXX@{host}:{port}/{database}", password


def bundle_zip(uri: str) -> bytes:
    files = assets_yaml.render()
    files[assets_yaml.DATABASE_FILE] = assets_yaml.dump(assets_yaml.database_yaml(uri))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        # Superset wants one top folder; timestamp is fixed so the same bundle gives the same bytes.
        z.writestr("dnma_bundle/metadata.yaml", yaml.safe_dump(
            {"version": "1.0.0", "type": "assets", "timestamp": "2025-01-01T00:00:00+00:00"}))
        for rel, text in sorted(files.items()):
            z.writestr(f"dnma_bundle/{rel}", text)
    return buf.getvalue()


# --- Superset REST client -----------------------------------------------------------------------
@dataclass
class Superset:
    url: str
    username: str
    password: str
    http: httpx.Client = field(init=False)
    changes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url.rstrip("/"), timeout=120)

    def wait(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http.get("/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"Superset not ready at {self.url} after {timeout:.0f}s")
            time.sleep(1)

    def login(self) -> None:
        r = self.http.post("/api/v1/security/login", json={
            "username": self.username, "password": self.password, "provider": "db", "refresh": True})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        csrf = self.http.get("/api/v1/security/csrf_token/")
        csrf.raise_for_status()
        self.http.headers["X-CSRFToken"] = csrf.json()["result"]
        self.http.headers["Referer"] = self.url

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    def list_all(self, path: str, **query: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            q = "(" + ",".join([f"page:{page}", "page_size:100", *(f"{k}:{v}" for k, v in query.items())]) + ")"
            result = self.call("GET", path, params={"q": q})["result"]
            out.extend(result)
            if len(result) < 100:
                return out
            page += 1

    # --- steps
    def import_assets(self, uri: str, password: str) -> None:
        db_file = f"dnma_bundle/{assets_yaml.DATABASE_FILE}"
        self.call("POST", "/api/v1/assets/import/",
                  files={"bundle": ("dnma_bundle.zip", bundle_zip(uri), "application/zip")},
                  data={"passwords": json.dumps({db_file.split("/", 1)[1]: password})})

    def datasets(self) -> dict[str, int]:
        """table_name -> id of the bundle's datasets."""
        wanted = {d.uuid: d.name for d in DATASETS.values()}
        rows = self.list_all("/api/v1/dataset/", columns="!(id,uuid,table_name)")
        found = {wanted[r["uuid"]]: r["id"] for r in rows if r.get("uuid") in wanted}
        missing = set(wanted.values()) - set(found)
        if missing:
            raise RuntimeError(f"datasets missing after import: {sorted(missing)}")
        return found

    def charts(self) -> dict[str, dict[str, Any]]:
        """chart uuid -> {id, query_context} of the bundle's charts."""
        rows = self.list_all("/api/v1/chart/", columns="!(id,uuid,slice_name)")
        uuids = {c.uuid for d in DASHBOARDS for c in d.charts()}
        return {r["uuid"]: r for r in rows if r.get("uuid") in uuids}

    def fix_query_contexts(self, dataset_ids: dict[str, int]) -> None:
        """The saved query context names its datasource by id, which only exists after import."""
        by_uuid = self.charts()
        for dash in DASHBOARDS:
            for c in dash.charts():
                row = by_uuid.get(c.uuid)
                if row is None:
                    raise RuntimeError(f"chart {c.key} missing after import")
                qc = query_context(c)
                ds_id = dataset_ids[c.dataset]
                qc["datasource"] = {"id": ds_id, "type": "table"}
                qc["form_data"]["datasource"] = f"{ds_id}__table"
                text = json.dumps(qc, sort_keys=True, ensure_ascii=False)
                current = self.call("GET", f"/api/v1/chart/{row['id']}", params={
                    "q": "(columns:!(query_context))"})["result"].get("query_context")
                if current != text:
                    self.call("PUT", f"/api/v1/chart/{row['id']}", json={"query_context": text,
                                                                         "query_context_generation": False})

    def roles(self) -> dict[str, int]:
        return {r["name"]: r["id"] for r in self.list_all("/api/v1/security/roles/")}

    def ensure_role(self, name: str, roles: dict[str, int]) -> int:
        if name not in roles:
            roles[name] = self.call("POST", "/api/v1/security/roles/", json={"name": name})["id"]
            self.changes.append(f"role {name}")
        return roles[name]

    def set_role_permissions(self, role_id: int, role: str, pvm_ids: list[int]) -> None:
        current = self.call("GET", f"/api/v1/security/roles/{role_id}/permissions/")["result"]
        if sorted(p["id"] for p in current) != sorted(pvm_ids):
            self.call("POST", f"/api/v1/security/roles/{role_id}/permissions", json={
                "permission_view_menu_ids": sorted(pvm_ids)})
            self.changes.append(f"permissions of {role}")

    def permission_ids(self, dataset_ids: dict[str, int]) -> tuple[list[int], list[int]]:
        """(datasource_access on the territorial datasets, database_access on the DNMA database)."""
        rows = self.list_all("/api/v1/security/permissions-resources/")
        territorial = {f"[{DATABASE_NAME}].[{name}](id:{i})" for name, i in dataset_ids.items()
                       if DATASETS[name].perimeter}
        ds, db = [], []
        for r in rows:
            perm, view = r["permission"]["name"], r["view_menu"]["name"]
            if perm == "datasource_access" and view in territorial:
                ds.append(r["id"])
            elif perm == "database_access" and view.startswith(f"[{DATABASE_NAME}].(id:"):
                db.append(r["id"])
        if len(ds) != len(territorial) or not db:
            raise RuntimeError(f"permissions not found: {len(ds)}/{len(territorial)} datasets, database {db}")
        return ds, db

    def ensure_rls(self, rules: list[dict[str, Any]]) -> None:
        existing = {r["name"]: r for r in self.list_all(
            "/api/v1/rowlevelsecurity/", columns="!(id,name,clause,filter_type,group_key,description,"
            "tables.id,roles.id)") if r["name"].startswith(RLS_PREFIX)}
        for rule in rules:
            old = existing.pop(rule["name"], None)
            if old is None:
                self.call("POST", "/api/v1/rowlevelsecurity/", json=rule)
                self.changes.append(f"rls {rule['name']}")
                continue
            same = (old["clause"] == rule["clause"] and old["filter_type"] == rule["filter_type"]
                    and (old.get("group_key") or "") == rule["group_key"]
                    and sorted(t["id"] for t in old["tables"]) == sorted(rule["tables"])
                    and sorted(r["id"] for r in old["roles"]) == sorted(rule["roles"]))
            if not same:
                self.call("PUT", f"/api/v1/rowlevelsecurity/{old['id']}", json=rule)
                self.changes.append(f"rls {rule['name']} (updated)")
        for stale in existing.values():
            self.call("DELETE", f"/api/v1/rowlevelsecurity/{stale['id']}")
            self.changes.append(f"rls {stale['name']} (removed)")

    def ensure_user(self, user: SupersetUser, password: str, role_ids: list[int]) -> None:
        found = self.list_all("/api/v1/security/users/",
                          filters=f"!((col:username,opr:eq,value:{user.username}))")
        first, _, last = user.name.partition(" ")
        if not found:
            self.call("POST", "/api/v1/security/users/", json={
                "username": user.username, "first_name": first, "last_name": last or "-",
                "email": f"{user.username}@dnma.invalid", "active": True, "password": password,
                "roles": sorted(role_ids)})
            self.changes.append(f"user {user.username}")
            return
        current = self.call("GET", f"/api/v1/security/users/{found[0]['id']}")["result"]
        if sorted(r["id"] for r in current.get("roles", [])) != sorted(role_ids):
            self.call("PUT", f"/api/v1/security/users/{found[0]['id']}", json={"roles": sorted(role_ids)})
            self.changes.append(f"roles of user {user.username}")


def rls_rules(perimeters: RolePerimeters, dataset_ids: dict[str, int], roles: dict[str, int],
              exempt_roles: list[int]) -> list[dict[str, Any]]:
    """One Regular rule per territorial perimeter and clause; one Base rule denying every row of
    every DNMA dataset to anyone not holding a perimeter role (or Admin)."""
    rules: list[dict[str, Any]] = []
    for p in perimeters.perimeters:
        if p.level == "national":
            continue
        by_clause: dict[str, list[int]] = {}
        for name, ds_id in sorted(dataset_ids.items()):
            by_clause.setdefault(rls_clause(DATASETS[name], p), []).append(ds_id)
        for i, (clause, tables) in enumerate(sorted(by_clause.items())):
            rules.append({
                "name": f"{RLS_PREFIX}{p.name}" + (f" #{i + 1}" if i else ""),
                "description": f"Périmètre {p.level} = {p.value}", "filter_type": "Regular",
                "tables": sorted(tables), "roles": [roles[p.role]], "group_key": "perimetre", "clause": clause,
            })
    rules.append({
        "name": f"{RLS_PREFIX}sans périmètre", "description": "Sans périmètre : aucune ligne",
        "filter_type": "Base", "tables": sorted(dataset_ids.values()),
        "roles": sorted({*exempt_roles, *(roles[p.role] for p in perimeters.perimeters)}),
        "group_key": "", "clause": DENY_ALL,
    })
    return rules


def env_key(username: str) -> str:
    return "SUPERSET_USER_" + username.upper().replace("-", "_") + "_PASSWORD"


def provision(sup: Superset, settings: Any, perimeters: RolePerimeters, passwords: dict[str, str]) -> dict[str, str]:
    """Everything; returns the users' passwords (existing ones kept) keyed by env variable name."""
    uri, ch_password = database_uri(settings)
    sup.import_assets(uri, ch_password)
    dataset_ids = sup.datasets()
    sup.fix_query_contexts(dataset_ids)

    roles = sup.roles()
    ds_perms, db_perms = sup.permission_ids(dataset_ids)
    reader = sup.ensure_role(READER_ROLE, roles)
    sup.set_role_permissions(reader, READER_ROLE, ds_perms)
    for p in perimeters.perimeters:
        role_id = sup.ensure_role(p.role, roles)
        if p.level == "national":
            sup.set_role_permissions(role_id, p.role, db_perms)  # every dataset, quality included
    sup.ensure_rls(rls_rules(perimeters, dataset_ids, roles, [roles["Admin"]]))

    out: dict[str, str] = {}
    levels = {p.name: p.level for p in perimeters.perimeters}
    for u in perimeters.users:
        if u.example:  # one example account per level, named in stack.env for the README
            level = levels[u.perimeters[0]] if u.perimeters else "aucun"
            out[f"SUPERSET_EXAMPLE_{level.upper()}_USER"] = u.username
        key = env_key(u.username)
        out[key] = passwords.get(key) or secrets.token_urlsafe(16)
        role_ids = [roles["Gamma"], reader, *(roles[ROLE_PREFIX + name] for name in u.perimeters)]
        sup.ensure_user(u, out[key], role_ids)
    return out


def warm_caches(url: str, username: str, password: str) -> list[str]:
    """Open every dashboard once in headless Chromium, as a user would: each chart's and native
    filter's query lands in Superset's data cache (DATA_CACHE_CONFIG) and both gunicorn workers
    have loaded what their first chart request imports, so the first user's load costs what a
    second one does. Skipped (returns []) without Chromium or selenium; never fails provisioning."""
    try:
        from dnma_superset.browser import CHROMEDRIVER, CHROMIUM, Browser
    except ImportError:
        return []
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return []
    warmed = []
    try:
        with Browser(url) as browser:
            browser.login(username, password)
            for d in DASHBOARDS:
                load = browser.open_dashboard(d.slug, len(d.charts()), timeout=300)
                if load.rendered == load.charts and not load.errors:
                    warmed.append(d.slug)
    except Exception as exc:  # noqa: BLE001 - a cold cache is slower, not wrong
        print(json.dumps({"warm_caches": f"stopped: {exc}"[:300]}, ensure_ascii=False))
    return warmed


# --- command line -------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    prov = sub.add_parser("provision", help="import the dashboards, create perimeter roles, RLS and users")
    prov.add_argument("--url", default=os.environ.get("SUPERSET_URL", "http://127.0.0.1:8088"))
    prov.add_argument("--admin-user", default=os.environ.get("SUPERSET_ADMIN_USER", "admin"))
    prov.add_argument("--admin-password", default=os.environ.get("SUPERSET_ADMIN_PASSWORD", ""))
    prov.add_argument("--env-file", type=Path, default=None, help="where user passwords are kept (default var/stack.env)")
    prov.add_argument("--perimeters", type=Path, default=PERIMETERS_FILE)
    prov.add_argument("--timeout", type=float, default=300, help="seconds to wait for Superset")
    prov.add_argument("--no-warm", action="store_true",
                      help="do not open each dashboard once afterwards to warm Superset's caches")


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if "=" in line and not line.startswith("#"))


def write_env(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    from dnma.settings import Settings

    settings = Settings()
    env_file = args.env_file or settings.data_dir / "stack.env"
    env = read_env(env_file)
    password = args.admin_password or env.get("SUPERSET_ADMIN_PASSWORD", "")
    if not password:
        raise SystemExit("no admin password: pass --admin-password or set SUPERSET_ADMIN_PASSWORD")
    sup = Superset(args.url, args.admin_user, password)
    sup.wait(args.timeout)
    sup.login()
    perimeters = RolePerimeters.load(args.perimeters)
    users = provision(sup, settings, perimeters, env)
    env = read_env(env_file)  # `dnma up` may have written meanwhile
    env.update(users)
    write_env(env_file, env)
    warmed = [] if args.no_warm else warm_caches(args.url, args.admin_user, password)
    print(json.dumps({"superset": args.url, "changes": sup.changes, "users": len(users), "warmed": warmed},
                     ensure_ascii=False))
    return 0
