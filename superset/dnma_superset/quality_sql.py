"""The SQL of the Qualité dashboard's datasets (hit quality, alerts, check states), with the columns
that place each row in a perimeter (row-level security) and the French labels of the checks' codes.

A row is placed by what it is about: a hit by its establishment's territory (its UAI in the
referential), else, when the UAI is invalid or unknown, by the declared perimeter of the ENT that
sent it; an alert by its scope (an establishment's territory, an académie, a site's or an ENT's
declared perimeter; `site_concerne`, the site an ENT site's editor sees, for an alert about a site); an alert on the whole pipeline (spool, loader, clock, refused requests) and
a check's state concern everyone ("commun = 1"), as they hold every perimeter's figures back.
"""

from __future__ import annotations

from aggregator.checks.runner import CHECKS
from dnma.indicators import PERIMETERS_TABLE
from dnma_superset.labels import label_sql

# Raw hits hold the quality columns (flags, reception delay) no rollup keeps: the quality
# dashboard reads the last QUALITY_DAYS days only (an ops view; the checks judge 24 hours).
QUALITY_DAYS = 14
# A hit's reception delay in seconds (received_at - ts), exact under a minute and truncated to the
# minute beyond: the dataset keeps one row per distinct delay of a site and day (a few on a healthy
# day, at most one per minute of delay), and a median shown in hours and minutes loses nothing.
_DELAY = "(toInt64(received_at) - toInt64(ts))"
DELAY_S = f"if(abs({_DELAY}) < 60, {_DELAY}, intDiv({_DELAY}, 60) * 60)"
DELAY_MEDIAN_MS = "1000 * quantileExactWeighted(0.5)(delai_s, hits)"

# Short French names of the checks (their descriptions, longer, are in `dnma checks list`).
CHECK_LABELS = {
    "silence": "Site silencieux",
    "volume": "Volume quotidien inhabituel",
    "invalid_uai": "UAI invalides",
    "unknown_uai": "UAI inconnus du référentiel",
    "missing_properties": "Propriétés manquantes",
    "vocabulary": "Valeurs hors vocabulaire",
    "perimeter": "UAI hors du périmètre déclaré",
    "coverage": "Couverture du marquage",
    "lateness": "Hits reçus en retard",
    "clock_skew": "Hits datés dans le futur",
    "duplicates": "Hits en double",
    "ingestion": "Santé de l'ingestion",
    "clock_jumps": "Sauts de l'horloge du serveur",
}
assert set(CHECK_LABELS) == set(CHECKS), "every check needs a French label on the dashboard"
SEVERITY_LABELS = {"critical": "Critique", "warning": "Avertissement", "info": "Information"}
SCOPE_LABELS = {"site": "Site", "projet": "Projet ENT", "academie": "Académie", "uai": "Établissement",
                "pipeline": "Chaîne de collecte"}
STATUS_LABELS = {"open": "Ouverte", "resolved": "Résolue"}
STATE_LABELS = {"erreur": "En erreur", "alerte": "En alerte", "ok": "Normal"}
# The refusal reasons of the quarantine (collector.hit.INVALID_REASONS), in French.
REFUSAL_LABELS = {
    "missing_site": "idsite absent",
    "invalid_site": "idsite invalide",
    "unknown_site": "Site non enregistré",
    "auth_required": "Jeton requis (token_auth)",
    "cdt_too_old": "cdt de plus de 24 h sans jeton",
    "invalid_cid": "cid invalide",
    "invalid_event": "Événement invalide",
    "invalid_content": "Contenu invalide",
    "invalid_performance": "Mesure de performance invalide",
}


# The perimeter of RLS rules on these datasets: rows of the perimeter's territory or ENT, and the
# rows that concern everyone.
QUALITY_PERIMETER = {
    "region": "commun = 1 OR has(regions_perimetre, {value})",
    "academie": "commun = 1 OR has(academies_perimetre, {value})",
    "departement": "commun = 1 OR has(departements_perimetre, {value})",
    "projet": "commun = 1 OR projet = {value}",
    # an ENT site's editor: its site's rows (hits, refused requests, alerts about the site)
    "site": "commun = 1 OR site_concerne = {value}",
}
# The user's RLS rules applied to the alerts a check's state counts (controles_qualite): one
# perimeter's rules are alternatives (Superset ORs the rules of a group; DNMA's share one group).
_USER_RLS = ("{% set dnma_rls = current_user_rls_rules() or [] %}"
             "{% if dnma_rls %} AND (({{ dnma_rls | join(') OR (') }})){% endif %}")


def _ent_territories(db: str) -> str:
    """Each ENT's declared perimeter as the territories it spans."""
    return (f"SELECT projet, groupUniqArray(departement) AS departements, groupUniqArray(academie) AS academies,"
            f" groupUniqArray(region) AS regions FROM {db}.{PERIMETERS_TABLE} FINAL GROUP BY projet")


def _alerts(db: str, ref: str) -> str:
    """Every alert (open or resolved) with its French labels and its perimeter columns."""
    uai = "tuple(q.scope_value)"
    return f"""SELECT q.controle AS controle, {label_sql('q.controle', CHECK_LABELS)} AS libelle_controle,
  q.scope_kind AS scope_kind, {label_sql('q.scope_kind', SCOPE_LABELS)} AS portee, q.scope_value AS scope_value,
  q.fenetre AS fenetre, q.severity AS severity, {label_sql('q.severity', SEVERITY_LABELS)} AS gravite,
  q.status AS status, {label_sql('q.status', STATUS_LABELS)} AS statut, q.message AS message,
  q.observed AS observed, q.expected AS expected, q.first_seen AS first_seen, q.last_seen AS last_seen,
  toUInt8(q.scope_kind = 'pipeline') AS commun, q.projet AS projet,
  if(q.scope_kind = 'site', toUInt32OrZero(q.scope_value), toUInt32(0)) AS site_concerne,
  multiIf(q.scope_kind = 'uai', [dictGetOrDefault({ref}, 'departement', {uai}, '')],
          q.scope_kind = 'academie', ac.departements, t.departements) AS departements_perimetre,
  multiIf(q.scope_kind = 'uai', [dictGetOrDefault({ref}, 'academie', {uai}, '')],
          q.scope_kind = 'academie', [q.scope_value], t.academies) AS academies_perimetre,
  multiIf(q.scope_kind = 'uai', [dictGetOrDefault({ref}, 'region', {uai}, '')],
          q.scope_kind = 'academie', ac.regions, t.regions) AS regions_perimetre
FROM (SELECT a.`check` AS controle, a.scope_kind AS scope_kind, a.scope_value AS scope_value,
             a.`window` AS fenetre, a.severity AS severity, a.status AS status, a.message AS message,
             a.observed AS observed, a.expected AS expected, a.first_seen AS first_seen, a.last_seen AS last_seen,
             multiIf(a.scope_kind = 'projet', a.scope_value, a.scope_kind = 'site', s.projet, '') AS projet
      FROM {db}.quality_alerts_current AS a
      LEFT JOIN (SELECT toString(site_id) AS site, any(projet) AS projet FROM {db}.{PERIMETERS_TABLE} FINAL
                 GROUP BY site_id) AS s ON s.site = a.scope_value) AS q
LEFT JOIN ({_ent_territories(db)}) AS t ON t.projet = q.projet
LEFT JOIN (SELECT academie, groupUniqArray(departement) AS departements, groupUniqArray(region) AS regions
           FROM {db}.etablissements FINAL GROUP BY academie) AS ac ON ac.academie = q.scope_value"""


def quality_sql(db: str, ref: str, today: str) -> dict[str, str]:
    """dataset name -> SQL, for dataset_sql.SQL."""
    return {
        # One row per day, site, project, territory and reception delay (DELAY_S): every measure is
        # a sum, and the median delay of any selection is the weighted median of these rows (a
        # median of per-day or per-site medians is not the median of the hits).
        "qualite_hits": f"""SELECT h.day AS day, h.site_id AS site_id, h.projet AS projet, h.delai_s AS delai_s,
  h.hits AS hits, h.hits_uai_invalide AS hits_uai_invalide, h.hits_uai_inconnu AS hits_uai_inconnu,
  h.hits_uai_valide AS hits_uai_valide, h.delai_max_s AS delai_max_s, toUInt8(0) AS commun,
  h.site_id AS site_concerne,
  if(h.departement != '', [h.departement], t.departements) AS departements_perimetre,
  if(h.departement != '', [h.academie], t.academies) AS academies_perimetre,
  if(h.departement != '', [h.region], t.regions) AS regions_perimetre
FROM (SELECT toDate(ts) AS day, site_id, projet, {DELAY_S} AS delai_s,
             dictGetOrDefault({ref}, 'departement', tuple(uai), '') AS departement,
             dictGetOrDefault({ref}, 'academie', tuple(uai), '') AS academie,
             dictGetOrDefault({ref}, 'region', tuple(uai), '') AS region,
             count() AS hits,
             countIf(has(flags, 'invalid_uai')) AS hits_uai_invalide,
             countIf(uai != '' AND NOT has(flags, 'invalid_uai') AND NOT dictHas({ref}, tuple(uai))) AS hits_uai_inconnu,
             countIf(uai != '' AND NOT has(flags, 'invalid_uai')) AS hits_uai_valide,
             max(toInt64(received_at) - toInt64(ts)) AS delai_max_s
      FROM {db}.hits
      WHERE toDate(ts) >= {today} - {QUALITY_DAYS}
      GROUP BY day, site_id, projet, delai_s, departement, academie, region) AS h
LEFT JOIN ({_ent_territories(db)}) AS t ON t.projet = h.projet""",
        "alertes_qualite": _alerts(db, ref),
        # The refused requests kept (dnma quarantine), one row each, placed by their site's ENT:
        # an unregistered site id's rows are in no territory's perimeter (national users see them).
        "quarantaine": f"""SELECT q.id AS id, q.received_at AS received_at, toDate(q.received_at) AS day,
  q.site_id AS site_id, q.reason AS reason, {label_sql('q.reason', REFUSAL_LABELS)} AS motif, q.detail AS detail,
  q.request['url'] AS url, q.bulk AS bulk, toUInt8(0) AS commun, s.projet AS projet, q.site_id AS site_concerne,
  t.departements AS departements_perimetre, t.academies AS academies_perimetre, t.regions AS regions_perimetre
FROM {db}.quarantine AS q FINAL
LEFT JOIN (SELECT site_id, any(projet) AS projet FROM {db}.{PERIMETERS_TABLE} FINAL GROUP BY site_id) AS s
  ON s.site_id = q.site_id
LEFT JOIN ({_ent_territories(db)}) AS t ON t.projet = s.projet""",
        # A check's state is everyone's (commun = 1); the open alerts it counts are those of the
        # user's perimeter (the same rules as on alertes_qualite, applied inside).
        "controles_qualite": f"""SELECT r.controle AS controle, {label_sql('r.controle', CHECK_LABELS)} AS libelle_controle,
  r.dernier_passage AS dernier_passage, r.duree_ms AS duree_ms, r.constats AS constats, r.erreur AS erreur,
  a.ouvertes AS alertes_ouvertes,
  multiIf(r.erreur != '', '{STATE_LABELS["erreur"]}', a.ouvertes > 0, '{STATE_LABELS["alerte"]}',
          '{STATE_LABELS["ok"]}') AS etat,
  toUInt8(1) AS commun, '' AS projet, toUInt32(0) AS site_concerne, CAST([], 'Array(String)') AS departements_perimetre,
  CAST([], 'Array(String)') AS academies_perimetre, CAST([], 'Array(String)') AS regions_perimetre
FROM (SELECT `check` AS controle, max(ran_at) AS dernier_passage, argMax(duration_ms, ran_at) AS duree_ms,
             argMax(findings, ran_at) AS constats, argMax(error, ran_at) AS erreur
      FROM {db}.quality_check_runs GROUP BY `check`) AS r
LEFT JOIN (SELECT controle, count() AS ouvertes FROM ({_alerts(db, ref)})
           WHERE status = 'open'""" + _USER_RLS + """ GROUP BY controle) AS a
  ON a.controle = r.controle""",
    }
