"""The tagging debug view (GET /debug, GET /debug/hits): what the pipeline made of a site's last
hits — action, properties, flags, drop reason — live, for the ENT editor who is tagging pages.

Records are written only while someone watches: opening the view touches
`<data_dir>/debug/site-<id>.viewer`; every collector worker checks those files at most once a
second and, for a watched site, appends one JSON line per hit to `<data_dir>/debug/site-<id>.jsonl`
(rotated to `.jsonl.1` past 256 KiB). All workers append to the same file and the view reads it,
so with several workers the view shows every hit whichever worker took it. Recording stops
VIEWER_TTL_S after the last poll; captures and markers untouched for `debug_captures_keep_hours`
are deleted (each worker looks every SWEEP_S). Nothing recorded holds an IP, a raw uid, a token or the values
of the page URL's query string.
"""

from __future__ import annotations

import difflib
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from collector import steps
from collector.context import PipelineContext
from collector.hit import DropReason, Hit
from dnma import clock, guide, vocab
from dnma import uai as uai_rules
from dnma.access import request_token

if TYPE_CHECKING:
    from collector.app import Collector

VIEWER_TTL_S = 600.0  # recording goes on this long after the view's last poll
REFRESH_S = 1.0  # how often a worker looks for open views
SWEEP_S = 60.0  # how often a worker deletes old captures
MAX_FILE_BYTES = 256 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_TEXT_MAX = 300  # per recorded string: a record stays one small atomic append

ACTION_LABELS = {
    "pageview": "page vue",
    "download": "téléchargement",
    "outlink": "lien sortant",
    "event": "événement",
    "ping": "ping (maintien de visite)",
    "search": "recherche",
    "content": "contenu",
    "goal": "objectif",
}
FLAG_LABELS = {
    "missing_uai": "UAI manquant",
    "invalid_uai": "UAI invalide (format, département ou lettre de contrôle)",
    "outside_perimeter": "UAI hors du périmètre du site",
    "missing_service": "SERVICE manquant",
    "unknown_service": "SERVICE inconnu",
    "missing_type": "TYPE manquant",
    "unknown_type": "TYPE inconnu (NATIF ou TIERS)",
    "missing_profil": "PROFIL manquant",
    "unknown_profil": "PROFIL inconnu",
    "tiers_without_outil": "TYPE=TIERS sans OUTIL",
}
REASON_LABELS = {
    DropReason.MISSING_SITE: "idsite manquant",
    DropReason.INVALID_SITE: "idsite invalide",
    DropReason.UNKNOWN_SITE: "site inconnu",
    DropReason.AUTH_REQUIRED: "paramètre réservé aux requêtes authentifiées (token_auth)",
    DropReason.CDT_TOO_OLD: "cdt de plus de 24 h sans token_auth",
    DropReason.INVALID_CID: "cid invalide (16 caractères hexadécimaux attendus)",
    DropReason.INVALID_EVENT: "événement sans catégorie ou sans action",
    DropReason.INVALID_CONTENT: "c_n vide",
    DropReason.INVALID_PERFORMANCE: "mesure de performance négative",
    DropReason.NOT_RECORDED: "rec=1 absent",
    DropReason.BOT: "robot",
    DropReason.EXCLUDED_IP: "adresse IP exclue",
    DropReason.EXCLUDED_USER_AGENT: "User-Agent exclu",
    DropReason.DO_NOT_TRACK: "Do Not Track respecté",
    DropReason.PREVIEW: "préchargement du navigateur",
}
VERDICT_LABELS = {
    "accepted": "enregistré",
    "excluded": "exclu (réponse normale, non stocké)",
    "refused": "refusé (400)",
}
# Flags that keep a stored hit out of every indicator: the rollups, visits, Reporting API and
# Superset datasets all read `NOT has(flags, 'invalid_uai')` (aggregator/rollups.py,
# visits_query.py, reporting*.py, superset dataset_sql.py). The other flags are counted, their
# value shown as given (or "Non renseigné").
EXCLUDING_FLAGS = ("invalid_uai",)
# The rule of the tagging guide (dnma.guide's anchors in docs/tagging.md) each flag and drop reason
# links to.
FLAG_RULES = {
    "missing_uai": "uai",
    "invalid_uai": "uai",
    "outside_perimeter": "uai",
    "missing_service": "services",
    "unknown_service": "services",
    "missing_type": "types",
    "unknown_type": "types",
    "missing_profil": "profils",
    "unknown_profil": "profils",
    "tiers_without_outil": "outil",
}
REASON_RULES = {DropReason.AUTH_REQUIRED: "token", DropReason.CDT_TOO_OLD: "cdt"}
FLAG_RULE_DEFAULT = "debug"  # the guide's section on the debug view
REASON_RULE_DEFAULT = "refused"  # the guide's table of verdicts and drop reasons
# Allowed values of the controlled properties, as a tag writes them (the collector accepts any case).
ALLOWED = {
    "service": tuple(s.upper() for s in vocab.SERVICES),
    "type": vocab.TYPES,
    "profil": vocab.PROFILS,
}
_ALLOWED_TEXT_MAX = 160  # the list in a label: the rest in the record's "allowed" and the guide


def _cut(value: str) -> str:
    return value[:_TEXT_MAX]


def uai_problem(uai: str) -> str:
    """What is wrong with a normalised UAI flagged invalid, in the editor's words."""
    status = uai_rules.status(uai)
    if status is uai_rules.UaiStatus.BAD_FORMAT:
        return f"UAI invalide (« {uai[:20]} » : 7 chiffres puis une lettre attendus)"
    if status is uai_rules.UaiStatus.BAD_DEPARTEMENT:
        return f"UAI invalide (département « {uai[:3]} » inexistant)"
    if status is uai_rules.UaiStatus.BAD_CHECK_LETTER:
        return f"UAI invalide (lettre de contrôle {uai_rules.check_letter(uai[:7])} attendue)"
    return FLAG_LABELS["invalid_uai"]


def allowed_text(given: str, allowed: tuple[str, ...]) -> str:
    """« valeurs admises : A, B, … » for an unknown value: the closest values first, then the list in
    order up to _ALLOWED_TEXT_MAX characters, and how many are left out."""
    close = difflib.get_close_matches(given.upper(), allowed, n=2, cutoff=0.6)
    shown: list[str] = []
    size = 0
    for value in [*close, *(v for v in allowed if v not in close)]:
        if shown and size + len(value) + 2 > _ALLOWED_TEXT_MAX:
            break
        shown.append(value)
        size += len(value) + 2
    rest = len(allowed) - len(shown)
    text = ", ".join(shown) + (f", … (+{rest}, liste complète dans le guide)" if rest else "")
    hint = f" ; la plus proche : {close[0]}" if close else ""
    return f"valeurs admises : {text}{hint}"


def describe_flag(code: str, props: dict[str, str]) -> dict[str, Any]:
    """One flag of a record: its code, what exactly is wrong, the allowed values, the guide's rule."""
    flag: dict[str, Any] = {"code": code, "label": FLAG_LABELS.get(code, code)}
    prop = code.partition("_")[2]
    if code == "invalid_uai":
        flag["label"] = uai_problem(props.get("uai", ""))
    elif code.startswith("unknown_") and prop in ALLOWED:
        given = props.get(prop, "")
        flag["label"] = _cut(f"{prop.upper()} inconnu « {given[:40]} » : {allowed_text(given, ALLOWED[prop])}")
        flag["allowed"] = list(ALLOWED[prop])
    elif code.startswith("missing_") and prop in ALLOWED:
        flag["allowed"] = list(ALLOWED[prop])
    flag["rule"] = guide.link(FLAG_RULES.get(code, FLAG_RULE_DEFAULT))
    return flag


def mask_query(url: str) -> str:
    """The URL with the values of its query string hidden (they may hold personal data)."""
    base, sep, rest = url.partition("?")
    if not sep:
        return _cut(url)
    query, hash_sep, fragment = rest.partition("#")
    names = [pair.partition("=")[0] for pair in query.split("&") if pair]
    masked = "&".join(f"{name}=…" for name in names)
    return _cut(f"{base}?{masked}{hash_sep}{fragment}")


def describe(hit: Hit, reason: DropReason | None, ctx: PipelineContext) -> dict[str, Any]:
    """What the pipeline made of a hit whose site is known, as the debug view and the validation
    route (collector.validation) show it: action, properties, flags, verdict, what will count."""
    site = hit.site
    assert site is not None
    p = hit.params
    if reason is not None:  # every drop happens before the step that names the action
        steps.classify_action(hit, ctx)
    props = dict(hit.props)
    if not props:  # dropped before dnma_properties: show what the page sent
        props = {prop: p[key].strip() for key, prop in ctx.slots(site).items() if key in p}
    flags = list(hit.flags)
    if props.get("type", "").upper() == "TIERS" and not props.get("outil"):
        flags.append("tiers_without_outil")
    described = [describe_flag(f, props) for f in flags]
    if reason is None:
        verdict = "accepted"
    elif reason.invalid:
        verdict = "refused"
    else:
        verdict = "excluded"
    verdict_label = VERDICT_LABELS[verdict]
    excluding = [f["label"] for f in described if f["code"] in EXCLUDING_FLAGS]
    counted = verdict == "accepted" and not excluding
    if verdict == "accepted" and excluding:
        verdict_label = f"{verdict_label}, exclu des indicateurs : {' ; '.join(excluding)}"
    action = hit.action
    page_url = p.get("url", "")
    target = p.get("download") if action == "download" else p.get("link") if action == "outlink" else ""
    record: dict[str, Any] = {
        "t": hit.now,
        "ts": hit.ts,
        "action": action,
        "action_label": ACTION_LABELS.get(action, action),
        "url": mask_query(page_url),
        "target": mask_query(target or ""),
        "title": _cut(p.get("action_name", "")),
        "properties": {k: _cut(v) for k, v in props.items() if v},
        "dimensions": {k: _cut(v) for k, v in hit.dimensions.items()},
        "uid": bool(p.get("uid", "").strip()),
        "flags": described,
        "verdict": verdict,
        "verdict_label": verdict_label,
        "counted": counted,  # stored and in the indicators
        "reason": reason.value if reason is not None else "",
        "reason_label": REASON_LABELS.get(reason, "") if reason is not None else "",
        "reason_rule": guide.link(REASON_RULES.get(reason, REASON_RULE_DEFAULT)) if reason is not None else "",
        "detail": _cut(hit.detail),
    }
    if action == "event":
        record["event"] = {k: _cut(p.get(k, "")) for k in ("e_c", "e_a", "e_n", "e_v")}
    return record


class DebugRecorder:
    """One per worker. `wants()` is the only call on the hot path: a clock compare and a set lookup."""

    def __init__(self, data_dir: Path, clock_offset: float = 0.0, keep_s: float = 24 * 3600.0) -> None:
        self.dir = Path(data_dir) / "debug"
        self.clock_offset = clock_offset  # hits are timed on DNMA's clock, files on the host's
        self.keep_s = keep_s  # captures untouched this long are deleted (0: never)
        self._active: frozenset[int] = frozenset()
        self._next_refresh = 0.0
        self._next_sweep = 0.0
        self._seq = 0
        self._pid = os.getpid()

    # --- hot path
    def wants(self, hit: Hit) -> bool:
        watched = self.watched_sites(hit.now)
        return bool(watched) and hit.site is not None and hit.site.id in watched

    def watched_sites(self, now: float) -> frozenset[int]:
        """The sites whose hits are recorded now: a bulk request asks once, not once per item."""
        if now >= self._next_refresh:
            self._refresh(now)
        return self._active

    def _refresh(self, now: float) -> None:
        self._next_refresh = now + REFRESH_S
        sweep = self.keep_s > 0 and now >= self._next_sweep
        if sweep:
            self._next_sweep = now + SWEEP_S
        active = set()
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.startswith("site-"):
                        continue
                    try:
                        age = now - (entry.stat().st_mtime + self.clock_offset)
                        if sweep and age > self.keep_s:
                            os.unlink(entry.path)  # an old capture (or marker): nobody watches it
                        elif name.endswith(".viewer") and age < VIEWER_TTL_S:
                            active.add(int(name[5:-7]))
                    except (OSError, ValueError):
                        continue
        except OSError:  # no view ever opened: no directory
            pass
        self._active = frozenset(active)

    # --- recording (only for watched sites)
    def record(self, hit: Hit, reason: DropReason | None, ctx: PipelineContext) -> None:
        site = hit.site
        assert site is not None
        try:
            line = orjson.dumps(self._describe(hit, reason, ctx)) + b"\n"
            path = self._path(site.id)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)  # one small O_APPEND write: workers never interleave lines
                size = os.fstat(fd).st_size
                if size > MAX_FILE_BYTES and os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.replace(path, path.with_name(path.name + ".1"))
            finally:
                os.close(fd)
        except (OSError, ValueError, TypeError):
            pass  # the debug view must never cost a hit

    def _describe(self, hit: Hit, reason: DropReason | None, ctx: PipelineContext) -> dict[str, Any]:
        self._seq += 1
        return {"id": f"{self._pid:x}-{self._seq:x}", **describe(hit, reason, ctx)}

    def _path(self, site_id: int) -> Path:
        return self.dir / f"site-{site_id}.jsonl"

    # --- the view's side
    def mark_viewer(self, site_id: int) -> None:
        """Someone watches this site: record its hits from now on (this worker at once, the
        others within REFRESH_S)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        marker = self.dir / f"site-{site_id}.viewer"
        marker.touch()  # also refreshes the mtime of an existing marker
        self._active = self._active | {site_id}

    def read(self, site_id: int, since: float, limit: int) -> list[dict[str, Any]]:
        """The last `limit` records newer than `since`, oldest first."""
        path = self._path(site_id)
        records = []
        for part in (path.with_name(path.name + ".1"), path):
            try:
                raw = part.read_bytes()
            except OSError:
                continue
            for line in raw.splitlines():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line being written right now
                if rec.get("t", 0) > since:
                    records.append(rec)
        records.sort(key=lambda r: r["t"])
        return records[-limit:]


# --- routes ----------------------------------------------------------------------------------------


def build_router(collector: Collector) -> APIRouter:
    router = APIRouter(tags=["debug"])
    recorder: DebugRecorder = collector.debug

    def authorise(idsite: str, token: str, authorization: str) -> int:
        """The site id the token may watch (dnma.access: a site's token or the super user, never a
        perimeter token): 401 without a known token, 403 for another site."""
        token = request_token(token, authorization)
        if not token:
            raise HTTPException(status_code=401, detail="token_auth manquant")
        grant = collector.access.grant(token)
        if grant is None:
            raise HTTPException(status_code=401, detail="token_auth invalide")
        site_id = steps.parse_int(idsite)
        if site_id is None or site_id <= 0:
            raise HTTPException(status_code=400, detail="idsite manquant ou invalide")
        if collector.access.sites.get(site_id) is None or not grant.may_operate(site_id):
            raise HTTPException(status_code=403, detail=f"pas d'accès au site {site_id}")
        return site_id

    @router.get("/debug")
    async def debug_page(
        idsite: str = Query(default=""),
        token_auth: str = Query(default=""),
        authorization: str = Header(default=""),
    ) -> Response:
        site_id = authorise(idsite, token_auth, authorization)
        recorder.mark_viewer(site_id)
        site = collector.access.sites.get(site_id)
        name = html.escape(site.name if site else str(site_id))
        page = _PAGE.replace("{{SITE}}", f"{site_id} — {name}")
        return HTMLResponse(page, headers=_PRIVATE_HEADERS)

    @router.get("/debug/hits")
    async def debug_hits(
        idsite: str = Query(default=""),
        token_auth: str = Query(default=""),
        since: float = Query(default=0.0),
        limit: int = Query(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        authorization: str = Header(default=""),
    ) -> Response:
        site_id = authorise(idsite, token_auth, authorization)
        recorder.mark_viewer(site_id)
        hits = await run_in_threadpool(recorder.read, site_id, since, limit)
        doc = {"idsite": site_id, "now": clock.time(), "recording_ttl_s": VIEWER_TTL_S, "hits": hits}
        return Response(orjson.dumps(doc), media_type="application/json", headers=_PRIVATE_HEADERS)

    return router


_PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the page URL holds the token
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'",
}

_PAGE = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Débogage du marquage — site {{SITE}}</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #1e1e1e; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
  th { background: #f3f3f3; }
  .accepted { color: #18753c; } .excluded { color: #b34000; } .refused { color: #ce0500; font-weight: bold; }
  .flag { display: inline-block; background: #fee9e7; color: #ce0500; border-radius: 3px; padding: 0 .3em; margin: 1px; }
  a.flag { text-decoration: underline dotted; }
  .ok { color: #18753c; } code { font-size: 12px; } #statut { color: #666; }
  dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 0 .6em; }
  dt { font-weight: bold; } dd { margin: 0; }
</style>
</head>
<body>
<h1>Débogage du marquage — site {{SITE}}</h1>
<p>Les requêtes de suivi reçues pour ce site s'affichent ici en direct, telles que le collecteur
les a comprises : action, propriétés DNMA extraites, signalements de qualité et verdict.
L'enregistrement commence à l'ouverture de cette page et s'arrête 10 minutes après sa fermeture.
Ni adresse IP, ni identifiant d'utilisateur, ni jeton ne sont affichés ; les valeurs des paramètres
d'URL sont masquées.</p>
<p>Le verdict dit ce qui comptera : un hit « enregistré, exclu des indicateurs » est stocké mais
n'entre dans aucun indicateur. Chaque signalement renvoie à sa règle dans le guide de marquage.</p>
<p id="statut">Connexion…</p>
<table>
  <thead><tr><th>Heure</th><th>Action</th><th>URL</th><th>Propriétés</th><th>Signalements</th><th>Verdict</th></tr></thead>
  <tbody id="hits"></tbody>
</table>
<script>
(function () {
  var q = new URLSearchParams(location.search);
  var api = 'debug/hits?idsite=' + encodeURIComponent(q.get('idsite') || '') +
    '&token_auth=' + encodeURIComponent(q.get('token_auth') || '');
  var since = 0, seen = {}, body = document.getElementById('hits'), statut = document.getElementById('statut');
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function row(h) {
    var tr = el('tr'); tr.dataset.id = h.id; tr.dataset.verdict = h.verdict;
    tr.appendChild(el('td', new Date(h.t * 1000).toLocaleTimeString('fr-FR')));
    var action = el('td', h.action_label);
    if (h.event) action.appendChild(el('div', [h.event.e_c, h.event.e_a, h.event.e_n].filter(Boolean).join(' / ')));
    tr.appendChild(action);
    var url = el('td'); url.appendChild(el('code', h.target || h.url));
    if (h.title) url.appendChild(el('div', h.title));
    tr.appendChild(url);
    var props = el('td'), dl = el('dl');
    Object.keys(h.properties).concat(Object.keys(h.dimensions)).forEach(function (k) {
      dl.appendChild(el('dt', k.toUpperCase()));
      dl.appendChild(el('dd', h.properties[k] != null ? h.properties[k] : h.dimensions[k]));
    });
    dl.appendChild(el('dt', 'UID')); dl.appendChild(el('dd', h.uid ? 'présent (pseudonymisé)' : 'absent'));
    props.appendChild(dl); tr.appendChild(props);
    var flags = el('td');
    if (!h.flags.length) flags.appendChild(el('span', 'aucun', 'ok'));
    h.flags.forEach(function (f) {
      // each flag links to its rule in the tagging guide; the allowed values show on hover
      var s = el(f.rule ? 'a' : 'span', f.label, 'flag'); s.dataset.code = f.code;
      if (f.rule) { s.href = f.rule; s.target = '_blank'; s.rel = 'noopener'; }
      if (f.allowed) s.title = 'Valeurs admises : ' + f.allowed.join(', ');
      flags.appendChild(s);
    });
    tr.appendChild(flags);
    var verdict = el('td', h.verdict_label, h.verdict);
    if (h.reason) {
      var why = el('div', h.reason_label + ' (' + h.reason + ')' + (h.detail ? ' : ' + h.detail : '') + ' ');
      if (h.reason_rule) {
        var a = el('a', 'règle'); a.href = h.reason_rule; a.target = '_blank'; a.rel = 'noopener'; why.appendChild(a);
      }
      verdict.appendChild(why);
    }
    tr.appendChild(verdict);
    return tr;
  }
  function poll() {
    fetch(api + '&since=' + Math.max(0, since - 2), { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (doc) {
      doc.hits.forEach(function (h) {
        if (seen[h.id + '@' + h.t]) return;
        seen[h.id + '@' + h.t] = 1;
        since = Math.max(since, h.t);
        body.insertBefore(row(h), body.firstChild);
      });
      while (body.children.length > 200) body.removeChild(body.lastChild);
      statut.textContent = 'À jour : ' + new Date(doc.now * 1000).toLocaleTimeString('fr-FR') +
        ' — ' + body.children.length + ' requête(s) affichée(s).';
    }).catch(function (e) {
      statut.textContent = 'Erreur : ' + e.message;
    }).then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
</body>
</html>
"""
