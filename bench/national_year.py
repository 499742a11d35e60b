"""A national school year at rollup level (issue #21): the visit rollup tiers generated directly
inside chDB (not from raw hits) for 60,000 establishments × 180 school days × 5 profils × 4 devices
(and the services tier × 25 services), the dashboards' chart queries timed on them, then one national
school week of `visits` (about 15 M) and the four weekly open-data exports timed on it. Prints JSON;
never a pass/fail test.

    nice -n 10 .venv/bin/python bench/national_year.py [--scale 1.0] [--days 180] [--runs 10] [--dir DIR]

--scale multiplies the number of establishments (60,000) and so every row count; the per-establishment
model is the same at any scale. The JSON says what ran.

The sparsity model (one "base" row per establishment × school day × profil × device with visits):
- establishments (synthetic referential, 101 départements, 30 académies, 18 régions): 81 % écoles
  (1D, 30-249 pupils), 12 % collèges (200-699), 7 % lycées (300-1,299): about 13 M pupils at scale 1;
  12 % private. An ENT serves 55 % of the écoles and 97 % of collèges and lycées (the others never
  appear); 1D ENTs per département, 2D ENTs per région (one site each).
- an establishment with an ENT is active on a school day with probability 0.75 (école; 0.2 on
  Wednesdays) or 0.98 (2D); an active one has V = pupils × rate × intensity × noise visits that day,
  rate 0.25 (1D) or 0.40 (2D) visits per pupil, halved (1D) or × 0.6 (2D) on Wednesdays, intensity a
  per-establishment factor in [0.3, 1.7) and noise a daily one in [0.5, 1.5): about 3 M visits a
  school day, 540 M a year, the order of DNMA's 650 M visits a year (weekends and holidays excluded).
- V is split over profils (1D: parents 45 %, pupils 30 %, teachers 20 %; 2D: pupils 55 %, parents
  25 %, teachers 14 %; admin and other the rest) and devices (by profil: pupils and parents mostly
  smartphones and computers, staff computers); a (profil, device) cell of expected x visits gets
  floor(x + u) visits, u uniform in [0, 1): it exists with probability min(x, 1), so small écoles have
  a few rows a day and lycées all 20.
- a cell's users: ceil(visits / 1.25), drawn each day from the establishment's population of that
  profil and device (pupils, 1.6 parents per pupil, a teacher per 12 pupils, ...), so yearly distinct
  users saturate as they do.
- per-UAI tiers (visits_daily, visits_weekly) hold uniq states of every drawn user; the coarse tiers
  (territoires, services) hold uniqCombined(12) states built from min(users, 2048) user hashes: past
  about a thousand elements such a state is its fixed 4,096-cell HyperLogLog, so its size and merge
  cost are the real ones while the generation stays affordable (their "utilisateurs" figures are
  under-counted for the largest rows: irrelevant to timings). visits_national_daily,
  visits_services_national_daily and visits_weekly are built from their source tier by the
  project's own queries (aggregator.rollups.VisitRollup.select).
- services: a visit of a (département, ENT, degré, profil) day touches service s with probability
  reach(s) × a per-(profil, service) factor in [0.5, 1.5) (about 2.5 services a visit).
- the week of visits expands the same base rows of one school week into one row per visit, the
  users of a cell being those of its states (exports read exact counts from them).

Dashboard queries are the Superset charts' own (dnma_superset: each chart's dataset SQL with its
Jinja rendered for a scenario, wrapped in the chart's grouping and metrics, as
tests/superset/test_chart_queries.py builds them), with the native filters of three scenarios:
the national user over the school year, an académie user (territorial tiers), one establishment
(per-UAI tier). Charts reading dnma.hits (Qualité, local events) are not timed: no hits here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ESTABLISHMENTS = 60_000
SCHOOL_YEAR_START = date(2025, 9, 1)  # rentrée 2025: school year 2025-2026, pinned (not the clock)
SCHOOL_YEAR = "2025-2026"
STATE_CAP = 2048  # user hashes per coarse-tier state (see the docstring)
DAYS_PER_INSERT = 10  # base rows and tiers are generated this many days at a time: bounded memory

PROFIL_SHARES = {  # profil: (share of a 1D establishment's visits, of a 2D one's), population per pupil
    "ELEVE": (0.30, 0.55, 1.0),
    "PARENT": (0.45, 0.25, 1.6),
    "ENSEIGNANT": (0.20, 0.14, 1 / 12),
    "ADMIN_VIE_SCOL_TECH": (0.03, 0.04, 1 / 50),
    "AUTRE": (0.02, 0.02, 1 / 20),
}
DEVICE_SHARES = {  # profil: shares of ordinateur, smartphone, tablette, autreappareil
    "ELEVE": (0.45, 0.45, 0.08, 0.02),
    "PARENT": (0.25, 0.65, 0.08, 0.02),
    "ENSEIGNANT": (0.75, 0.15, 0.08, 0.02),
    "ADMIN_VIE_SCOL_TECH": (0.90, 0.07, 0.02, 0.01),
    "AUTRE": (0.50, 0.40, 0.08, 0.02),
}
DEVICES = ("ordinateur", "smartphone", "tablette", "autreappareil")
SERVICE_REACH = {  # share of visits touching the service (before the per-profil factor)
    "accueil": 0.6, "actualites": 0.12, "cahier_textes": 0.3, "cahier_liaison": 0.12,
    "courrier_electronique": 0.2, "messagerie_instantanee": 0.1, "visioconference": 0.02,
    "stockage_partage": 0.08, "production_collaborative": 0.04, "documentation_cdi": 0.03,
    "parcours_pedagogique": 0.05, "reservation_salles_materiels": 0.02, "service_collectivite": 0.02,
    "services_vie_scolaire": 0.15, "gestion_temps": 0.1, "absences": 0.12, "gestion_competences": 0.05,
    "notes": 0.25, "manuel_numerique": 0.08, "ressource_multimedia": 0.05, "ressource_orientation": 0.03,
    "ressource_production": 0.02, "ressource_accompagnement_entrainement": 0.05,
    "ressource_reference_dictionnaire": 0.03, "ressource_documentaire": 0.04,
}
POP_PER_PUPIL = sum(p[2] for p in PROFIL_SHARES.values())  # people of an establishment per pupil
CELLS = len(PROFIL_SHARES) * len(DEVICES)
SKIPPED_DATASETS = {"evenements", "qualite_hits", "alertes_qualite", "controles_qualite"}  # dnma.hits, alerts


def school_days(n: int) -> list[date]:
    """The first `n` weekdays of school weeks (dnma.indicators.is_school_week) from the rentrée."""
    from dnma.indicators import is_school_week

    days: list[date] = []
    d = SCHOOL_YEAR_START
    while len(days) < n:
        if d.weekday() < 5 and is_school_week(d - timedelta(days=d.weekday())):
            days.append(d)
        d += timedelta(days=1)
    return days


def _scalar(client: Any, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def _array(values: Any) -> str:
    return "[" + ", ".join(repr(v) if not isinstance(v, str) else "'" + v + "'" for v in values) + "]"


# --- the synthetic referential and the base rows ---------------------------------------------------
def generate_referential(client: Any, n: int) -> None:
    """`n` establishments in dnma.etablissements (and its per-year twin, perimetres_ent) and in
    bench.etab with what the model needs (ENT or not, intensity)."""
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command("DROP TABLE IF EXISTS bench.etab")
    client.command(f"""
CREATE TABLE bench.etab ENGINE = MergeTree ORDER BY uai AS
SELECT uai, degre, code_nature, nature, secteur, dep, departement, departement_iso, academie, region,
       region_iso, eleves, has_ent, intensity, people,
       if(degre = '1D', concat('ENT1D-', toString(dep % 45)), concat('ENT2D-', toString(reg))) AS projet,
       toUInt32(if(degre = '1D', 1 + dep % 45, 100 + reg)) AS site_id,
       -- where its people start in the national population (bench.rows.pop_base)
       sum(people) OVER (ORDER BY number ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pop_base
FROM (
  SELECT concat(leftPad(toString(100000 + number), 7, '0'),
                substring('ABCDEFGHJKLMNPRSTUVWXYZ', 1 + number % 23, 1)) AS uai,
         cityHash64(number, 0) % 100 AS kind,
         if(kind < 81, '1D', '2D') AS degre,
         toUInt16(multiIf(kind < 81, 151, kind < 93, 340, kind < 97, 300, 320)) AS code_nature,
         multiIf(kind < 81, 'ECOLE DE NIVEAU ELEMENTAIRE', kind < 93, 'COLLEGE',
                 kind < 97, 'LYCEE D ENSEIGNEMENT GENERAL ET TECHNOLOGIQUE', 'LYCEE PROFESSIONNEL') AS nature,
         if(cityHash64(number, 1) % 100 < 12, 'PR', 'PU') AS secteur,
         cityHash64(number, 2) % 101 AS dep,
         intDiv(dep * 30, 101) AS acad,
         intDiv(acad * 18, 30) AS reg,
         concat('Département ', leftPad(toString(dep + 1), 3, '0')) AS departement,
         concat('FR-', leftPad(toString(dep + 1), 2, '0')) AS departement_iso,
         concat('Académie ', toString(acad + 1)) AS academie,
         concat('Région ', toString(reg + 1)) AS region,
         concat('FR-R', toString(reg + 1)) AS region_iso,
         toUInt32(multiIf(kind < 81, 30 + cityHash64(number, 3) % 220, kind < 93, 200 + cityHash64(number, 3) % 500,
                          300 + cityHash64(number, 3) % 1000)) AS eleves,
         cityHash64(number, 4) % 100 < if(degre = '1D', 55, 97) AS has_ent,
         0.3 + (cityHash64(number, 5) % 1400) / 1000 AS intensity,
         toUInt64(ceil(eleves * {POP_PER_PUPIL})) + {CELLS} AS people,
         number
  FROM numbers({n}))""")
    columns = ("uai, nom, code_nature, libelle_nature, degre, type_etablissement, secteur, commune_code, commune, "
               "departement_code, departement, departement_iso, academie_code, academie, region_code, region, "
               "region_iso, circonscription, ministere, eleves, source, loaded_at")
    select = ("SELECT uai, concat('Établissement ', uai), code_nature, nature, degre, "
              "if(degre = '1D', 'Ecole', if(code_nature = 340, 'Collège', 'Lycée')), secteur, '', "
              "concat('Commune ', toString(cityHash64(uai) % 30000)), leftPad(toString(dep + 1), 3, '0'), "
              "departement, departement_iso, academie, academie, region, region, region_iso, '', "
              "'MINISTERE DE L''EDUCATION NATIONALE', eleves, 'bench', toDateTime('2025-08-25 00:00:00') "
              "FROM bench.etab")
    client.command(f"INSERT INTO dnma.etablissements ({columns}) {select}")
    client.command(f"INSERT INTO dnma.etablissements_annees (annee, {columns}) SELECT 2025, * FROM ({select})")
    client.command("INSERT INTO dnma.perimetres_ent (site_id, projet, uai, degre, departement, academie, region, "
                   "loaded_at) SELECT site_id, projet, uai, degre, departement, academie, region, now() "
                   "FROM bench.etab WHERE has_ent")
    for d in ("etablissements_dict", "etablissements_annees_dict"):
        client.command(f"SYSTEM RELOAD DICTIONARY dnma.{d}")


def generate_base_rows(client: Any, days: list[date]) -> None:
    """bench.rows: one row per establishment × day × (profil, device) cell with visits (the model)."""
    client.command("DROP TABLE IF EXISTS bench.rows")
    client.command("""
CREATE TABLE bench.rows (day Date, uai String, degre LowCardinality(String), region LowCardinality(String),
  academie LowCardinality(String), departement LowCardinality(String), projet LowCardinality(String),
  site_id UInt32, nature LowCardinality(String), secteur LowCardinality(String),
  profil LowCardinality(String), device LowCardinality(String), visites UInt32, users UInt32, pop UInt32,
  cell_base UInt64, seed UInt64) ENGINE = MergeTree PARTITION BY day ORDER BY (uai, profil, device)""")
    cells = [(p, i) for p in PROFIL_SHARES for i in range(len(DEVICES))]  # 20 (profil, device) cells
    profils = _array(p for p, _ in cells)
    devices = _array(DEVICES[i] for _, i in cells)
    share_1d = _array(round(PROFIL_SHARES[p][0] * DEVICE_SHARES[p][i], 5) for p, i in cells)
    share_2d = _array(round(PROFIL_SHARES[p][1] * DEVICE_SHARES[p][i], 5) for p, i in cells)
    pop_shares = [PROFIL_SHARES[p][2] * DEVICE_SHARES[p][i] for p, i in cells]
    pop = _array(round(x, 6) for x in pop_shares)
    # a cell's people: [eleves × (shares of the cells before) + cells before, + its pop) in its establishment
    before = _array(round(sum(pop_shares[:c]), 6) for c in range(len(cells)))
    for i in range(0, len(days), DAYS_PER_INSERT):
        chunk = ", ".join(f"'{d}'" for d in days[i:i + DAYS_PER_INSERT])
        client.command(f"""
INSERT INTO bench.rows
WITH {profils} AS profils, {devices} AS devices, {share_1d} AS share_1d, {share_2d} AS share_2d, {pop} AS pop_share,
     {before} AS before
SELECT day, uai, degre, region, academie, departement, projet, site_id, nature, secteur,
       profils[c] AS profil, devices[c] AS device, visites,
       toUInt32(least(pop, ceil(visites / 1.25))) AS users, pop, cell_base, seed
FROM (
  SELECT day, e.uai AS uai, e.degre AS degre, e.region AS region, e.academie AS academie,
         e.departement AS departement, e.projet AS projet, e.site_id AS site_id, e.nature AS nature,
         e.secteur AS secteur, c,
         toDayOfWeek(day) = 3 AS wednesday,
         e.eleves * if(e.degre = '1D', 0.25 * if(wednesday, 0.5, 1), 0.40 * if(wednesday, 0.6, 1))
           * e.intensity * (0.5 + (cityHash64(e.uai, day, 1) % 1000) / 1000) AS v,
         v * if(e.degre = '1D', share_1d[c], share_2d[c]) AS x,
         toUInt32(floor(x + (cityHash64(e.uai, day, c, 2) % 10000) / 10000)) AS visites,
         toUInt32(greatest(1, e.eleves * pop_share[c])) AS pop,
         e.pop_base + toUInt64(floor(e.eleves * before[c])) + c - 1 AS cell_base,
         cityHash64(e.uai, day, c, 3) AS seed
  FROM bench.etab AS e
  CROSS JOIN (SELECT arrayJoin([{chunk}]) AS day) AS d
  ARRAY JOIN range(1, {len(cells)} + 1) AS c
  WHERE e.has_ent AND cityHash64(e.uai, day, 4) % 1000 <
        1000 * if(e.degre = '1D', if(toDayOfWeek(day) = 3, 0.2, 0.75), 0.98)
)
WHERE visites > 0""", settings={"max_insert_threads": 2})


# --- the rollup tiers --------------------------------------------------------------------------------
PRIME = 1_000_000_007  # > any population here: g -> g * PRIME % population is a bijection


class Users:
    """How a cell's users become a tier's distinct-users state. A user is g, its place in the national
    population (bench.rows.cell_base + its place in the cell's range); a dense-index tier (groupBitmap over
    dnma.user_index, UInt32) gets g scattered over the index (g * PRIME mod the population: users of
    one establishment are not neighbours in an index numbered in order of first appearance), a hash
    tier (uniq, uniqCombined) gets cityHash64(g) (64-bit keys, as USER_KEY)."""

    def __init__(self, population: int) -> None:
        self.population = population

    def element(self, rollup: Any, g: str) -> str:
        if rollup.users.startswith("groupBitmap"):
            return f"toUInt32(1 + ({g}) * {PRIME} % {self.population})"
        return f"cityHash64({g})"

    def state(self, rollup: Any, g: str, count: str) -> str:
        """The state of the users g(j), j in range(count) (`g` an SQL expression of j)."""
        elements = f"arrayMap(j -> {self.element(rollup, g)}, range({count}))"
        if rollup.users.startswith("groupBitmap"):
            return f"bitmapBuild({elements})"
        return f"arrayReduce('{rollup.users_state}', {elements})"


def generate_tiers(client: Any, settings: Any, days: list[date], users: Users) -> dict[str, float]:
    """The five daily tiers and the weekly one; returns seconds per step."""
    from aggregator.migrate import renderer
    from aggregator.rollups import BY_TABLE, inline_dates

    r = renderer(settings)
    seconds: dict[str, float] = {}
    reach = _array(SERVICE_REACH.values())
    services = _array(SERVICE_REACH)
    g = "cell_base + (seed + j) % pop"  # the j-th user drawn for a cell (a daily offset into its range)
    detail, territoires, svc = (BY_TABLE[t] for t in ("visits_daily", "visits_territoires_daily",
                                                       "visits_services_daily"))
    sums = "sum(visites) AS v, sum(duree) AS d, sum(pages_vues) AS pv, sum(actions) AS a, sum(rebonds) AS b"
    geo = "degre, region, academie, departement"
    if territoires.users == detail.users:  # the same state function: the union of the detail's states
        territoires_sql = (f"SELECT day, {geo}, profil, device, {sums}, "
                           f"{territoires.users_merge.replace('Merge', 'MergeState')}(utilisateurs) AS u "
                           "FROM dnma.visits_daily WHERE {where} GROUP BY day, " + geo + ", profil, device")
    else:  # another function: the cells' users again
        territoires_sql = (f"SELECT day, {geo}, profil, device, {sums}, "
                           f"{territoires.users_merge.replace('Merge', 'MergeState')}({users.state(territoires, g, 'users')}) AS u "
                           "FROM (SELECT *, visites * (120 + seed % 400) AS duree, visites * (2 + seed % 5) AS pages_vues, "
                           "visites * (3 + seed % 6) AS actions, intDiv(visites * (seed % 40), 100) AS rebonds "
                           "FROM bench.rows WHERE {where}) GROUP BY day, " + geo + ", profil, device")
    for i in range(0, len(days), DAYS_PER_INSERT):
        lo, hi = days[i], days[min(i + DAYS_PER_INSERT, len(days)) - 1]
        where = f"day BETWEEN '{lo}' AND '{hi}'"
        steps = {
            "visits_daily": f"""
INSERT INTO dnma.visits_daily (day, uai, site_id, projet, degre, region, academie, departement, profil, device,
  visites, utilisateurs, duree, pages_vues, actions, rebonds)
SELECT day, uai, site_id, projet, degre, region, academie, departement, profil, device, visites,
  {users.state(detail, g, 'users')},
  visites * (120 + seed % 400), visites * (2 + seed % 5), visites * (3 + seed % 6), intDiv(visites * (seed % 40), 100)
FROM bench.rows WHERE {where}""",
            "visits_territoires_daily": f"""
INSERT INTO dnma.visits_territoires_daily (day, {geo}, profil, device, visites, duree, pages_vues, actions, rebonds,
  utilisateurs)
{territoires_sql.format(where=where)}""",
            # A cell's visits touching service k: floor(visits × q + u); its users touching it, the
            # first ceil(users × q) of the cell's users.
            "visits_services_daily": f"""
INSERT INTO dnma.visits_services_daily (day, {geo}, projet, profil, service, visites, utilisateurs, duree,
  pages_vues, actions, rebonds)
WITH {services} AS services, {reach} AS reach
SELECT day, {geo}, projet, profil, services[k] AS service, sum(n) AS v,
  {svc.users_merge.replace('Merge', 'MergeState')}({users.state(svc, g, 'toUInt32(ceil(users * q))')}),
  v * 300, v * 5, v * 6, intDiv(v * 15, 100)
FROM (SELECT *, k, reach[k] * (0.5 + (cityHash64(profil, k) % 1000) / 1000) AS q,
             toUInt64(floor(visites * q + (cityHash64(seed, k) % 1000) / 1000)) AS n
      FROM bench.rows ARRAY JOIN range(1, length(services) + 1) AS k WHERE {where})
WHERE n > 0
GROUP BY day, {geo}, projet, profil, k""",
        }
        for table, sql in steps.items():
            t0 = time.monotonic()
            client.command(sql, settings={"max_insert_threads": 2})
            seconds[table] = seconds.get(table, 0.0) + time.monotonic() - t0
    # The tiers merged from a finer one: the project's own queries, one period at a time.
    weeks = sorted({d - timedelta(days=d.weekday()) for d in days})
    for table, periods in (("visits_national_daily", days), ("visits_services_national_daily", days),
                           ("visits_weekly", weeks)):
        rollup = BY_TABLE[table]
        t0 = time.monotonic()
        for value in periods:
            client.command(f"INSERT INTO {r.name(table)} " + inline_dates(rollup.select(r), {"period": value}))
        seconds[table] = time.monotonic() - t0
    return {t: round(s, 1) for t, s in seconds.items()}


def generate_user_index(client: Any, users: Users) -> bool:
    """dnma.user_index for the whole population (when the schema has one): its bytes are part of
    what a year costs."""
    if not _scalar(client, "EXISTS TABLE dnma.user_index"):
        return False
    client.command(f"INSERT INTO dnma.user_index (user_key, user_idx) SELECT cityHash64(number), "
                   f"toUInt32(1 + number * {PRIME} % {users.population}) FROM numbers({users.population})")
    return True


# --- one school week of visits and the exports ---------------------------------------------------------
def generate_week_visits(client: Any, monday: date) -> None:
    """dnma.visits for the week: the base rows of its days, one row per visit."""
    services = _array(SERVICE_REACH)
    reach = _array(SERVICE_REACH.values())
    user = "cityHash64(cell_base + (seed + i % users) % pop)"  # the cell's users in turn (Users: hash keys)
    client.command(f"""
INSERT INTO dnma.visits (visit_id, site_id, day, start, end, duration, actions, pageviews, events, downloads,
  outlinks, searches, hits, is_bounce, visitor_id, user_hash, uai, profil, device, os, browser, services, outils,
  type_natif, type_tiers, projet, campaign, degre, academie, departement, region, nature, secteur)
WITH {services} AS all_services, {reach} AS reach
SELECT cityHash64(seed, i) AS visit_id, site_id, day, start, start + duration - 1, duration, actions, pageviews,
  toUInt32(actions - pageviews), 0, 0, 0, actions + 2, actions <= 1, user_key, user_key, uai, profil, device,
  multiIf(device = 'ordinateur', ['windows', 'macos', 'chromeos', 'linux'][1 + h % 4],
          device = 'autreappareil', 'autreos', ['android', 'ios'][1 + h % 2]) AS os,
  ['chromemobile', 'safari', 'chrome', 'firefox', 'edge', 'samsungbrowser'][1 + intDiv(h, 7) % 6] AS browser,
  arraySort(arrayFilter((s, q) -> cityHash64(visit_id, s) % 1000 < 1000 * q, all_services, reach)) AS services,
  if(has(services, 'notes'), ['PRONOTE'], []), 1, has(services, 'notes'), projet, '', degre, academie,
  departement, region, nature, secteur
FROM (
  SELECT *, i, cityHash64(seed, i, 1) AS h, {user} AS user_key,
    toDateTime(day, 'Europe/Paris') + 7 * 3600 + h % (14 * 3600) AS start,
    toUInt32(1 + h % 900) AS duration, toUInt32(1 + intDiv(h, 1000) % 9) AS actions,
    toUInt32(1 + intDiv(h, 1000) % 9 - intDiv(h, 10000) % 2) AS pageviews
  FROM bench.rows ARRAY JOIN range(visites) AS i
  WHERE day BETWEEN '{monday}' AND '{monday + timedelta(days=6)}'
)""", settings={"max_insert_threads": 2})


def time_exports(client: Any, monday: date) -> dict[str, Any]:
    """The four weekly exports of the week, as published (aggregator.exports.write): seconds and rows."""
    from aggregator.exports import DATASETS, write

    out: dict[str, Any] = {}
    for name, dataset in DATASETS.items():
        sink = io.StringIO()
        t0, c0 = time.monotonic(), cpu_seconds()
        rows = write(client, dataset, monday, monday + timedelta(days=6), sink)
        out[name] = {"seconds": round(time.monotonic() - t0, 2), "cpu_s": round(cpu_seconds() - c0, 2),
                     "rows": rows, "csv_bytes": len(sink.getvalue())}
    files = list(out.values())
    out["total_seconds"] = round(sum(v["seconds"] for v in files), 2)
    out["total_cpu_s"] = round(sum(v["cpu_s"] for v in files), 2)
    return out


# --- the dashboards' queries -------------------------------------------------------------------------
# The branch of a dataset's if/elif/else chain read (Superset's Jinja, evaluated for a scenario):
# the one reading the tier the scenario's filters lead to.
_CHAIN = re.compile(r"\{%- (?:if|elif|else)[^%]*%\}")
_YEAR_LOOP = re.compile(r"\{% for y in filter_values\('annee_scolaire'\) %\}.*?\b([\w.()]+) BETWEEN makeDate.*?"
                        r"\{% endfor %\}", re.S)


def render(sql: str, scenario: dict[str, Any], today: date) -> str:
    """A dataset's (or metric's) SQL with its Jinja evaluated for `scenario`: `tables` the tiers
    its filters lead to, in preference order; `detail` the per-UAI flag; `year` the school year."""
    sql = re.sub(r"\{%-? set .*?-?%\}\n?", "", sql, flags=re.S)
    # {% if dnma_detail %}a{% else %}b{% endif %} (the users state or merge of the tier read)
    flag = r"\{%-? if dnma_detail -?%\}((?:(?!\{%-? elif).)*?)\{%-? else -?%\}(.*?)\{%-? endif -?%\}"
    sql = re.sub(flag, lambda m: m.group(1 if scenario["detail"] else 2), sql, flags=re.S)
    parts = _CHAIN.split(sql)
    if len(parts) > 1:
        branches = [re.sub(r"\{%-? endif -?%\}", "", p) for p in parts[1:]]
        sql = next((b for t in scenario["tables"] for b in branches if f"FROM dnma.{t} AS t" in b), branches[-1])
    year = scenario.get("year")
    sql = _YEAR_LOOP.sub(lambda m: f" AND ({m.group(1)} BETWEEN makeDate({year[:4]}, 8, 1) AND "
                                   f"makeDate({int(year[:4]) + 1}, 7, 31))" if year else "", sql)
    sql = sql.replace("{{ dnma_today() }}", today.isoformat()).replace("{{ dnma_active_weeks() }}", "4")
    # What is left: {% if <no filter> %}a{% else %}b{% endif %} -> b; {% if ... %}a{% endif %} -> nothing
    sql = re.sub(r"\{%-? if [^%]*%\}(?:(?!\{%-? (?:if|endif)).)*?\{%-? else -?%\}(.*?)\{%-? endif -?%\}", r"\1",
                 sql, flags=re.S)
    sql = re.sub(r"\{%-? if .*?%\}.*?\{%-? endif -?%\}", "", sql, flags=re.S)
    if "{%" in sql or "{{" in sql:
        raise ValueError(f"unrendered Jinja left: {sql[:200]}")
    return sql


def chart_sql(chart: Any, scenario: dict[str, Any], today: date) -> str:
    """The chart's query as Superset builds it: the dataset as a subquery, the native filters of the
    scenario on the columns the dataset has, the chart's own filters, grouping, metrics, row limit."""
    from dnma_superset.charts import query_context
    from dnma_superset.dataset_sql import SQL
    from dnma_superset.datasets import DATASETS

    q = query_context(chart)["queries"][0]
    dataset = DATASETS[chart.dataset]
    columns = [c if isinstance(c, str) else c["sqlExpression"] for c in q["columns"]]
    metrics = {m[0]: m[2] for m in dataset.metrics}
    selected = [render(metrics[m], scenario, today) for m in q["metrics"]]
    has = {c[0] for c in dataset.columns}
    wheres = [f"{c} = '{v}'" for c, v in scenario["filters"].items() if c in has]
    if scenario.get("year") and "annee_scolaire" in has:
        wheres.append(f"annee_scolaire IN ('{scenario['year']}')")
    if q["extras"]["where"]:
        wheres.append(q["extras"]["where"])
    where = f"WHERE {' AND '.join(wheres)}" if wheres else ""
    group = f"GROUP BY {', '.join(columns)}" if columns else ""
    return (f"SELECT {', '.join([*columns, *selected])} FROM ({render(SQL[chart.dataset], scenario, today)}) "
            f"AS virtual_table {where} {group} LIMIT {q['row_limit']}")


def scenarios(client: Any) -> dict[str, dict[str, Any]]:
    """The national user, an académie's user, one establishment's page (the largest lycée's UAI)."""
    academie = client.query("SELECT academie FROM dnma.visits_territoires_daily GROUP BY academie "
                            "ORDER BY sum(visites) DESC LIMIT 1").result_rows[0][0]
    uai = client.query("SELECT uai FROM bench.etab WHERE has_ent "
                       "ORDER BY code_nature = 300 DESC, eleves DESC LIMIT 1").result_rows[0][0]
    return {
        "national": {"dashboards": ["dnma-vue-nationale", "dnma-territoires", "dnma-deploiement",
                                    "dnma-services-outils"],
                     "tables": ["visits_national_daily", "visits_services_national_daily"], "detail": False,
                     "filters": {}, "year": SCHOOL_YEAR},
        "academie": {"dashboards": ["dnma-vue-nationale", "dnma-territoires", "dnma-services-outils"],
                     "tables": ["visits_territoires_daily", "visits_services_daily"], "detail": False,
                     "filters": {"academie": academie}, "year": SCHOOL_YEAR},
        "etablissement": {"dashboards": ["dnma-etablissement"], "tables": ["visits_daily", "visits"],
                          "detail": True, "filters": {"uai": uai}, "year": SCHOOL_YEAR},
    }


def cpu_seconds() -> float:
    """CPU of this process, chDB's query threads included (embedded: they are ours)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(client: Any, sql: str, runs: int) -> dict[str, Any]:
    """p50/p95 of the wall time, and the median CPU time of a run: on a loaded machine the wall time
    is mostly waiting for a core, the CPU time is what the query costs (at most 2 cores' worth of
    it a second here)."""
    rows = len(client.query(sql).result_rows)  # a first run: Superset's cache warm-up does the same
    times, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), cpu_seconds()
        client.query(sql)
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    times.sort()
    return {"p50_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "cpu_p50_ms": round(1000 * statistics.median(cpus), 1), "rows": rows}


def time_dashboards(client: Any, today: date, runs: int, visits_note: str) -> dict[str, Any]:
    from dnma_superset.dashboards import DASHBOARDS

    by_slug = {d.slug: d for d in DASHBOARDS}
    out: dict[str, Any] = {}
    for name, scenario in scenarios(client).items():
        result: dict[str, Any] = {"filters": scenario["filters"], "year": scenario["year"], "dashboards": {}}
        for slug in scenario["dashboards"]:
            charts = {}
            for chart in by_slug[slug].charts():
                if chart.dataset in SKIPPED_DATASETS:
                    continue
                try:
                    sql = chart_sql(chart, scenario, today)
                    charts[chart.key] = timed(client, sql, runs)
                except Exception as exc:  # a dataset whose Jinja this renderer does not evaluate
                    charts[chart.key] = {"error": str(exc).splitlines()[0][:200]}
                    continue
                if "dnma.visits " in sql or "dnma.visits\n" in sql:
                    charts[chart.key]["reads"] = visits_note
            result["dashboards"][slug] = {"charts": charts, "max_p95_ms": max(
                (c["p95_ms"] for c in charts.values() if "p95_ms" in c), default=0.0)}
        out[name] = result
    return out


# --- storage -------------------------------------------------------------------------------------------
def storage(client: Any) -> dict[str, Any]:
    rows = client.query(
        "SELECT table, sum(bytes_on_disk), sum(rows), uniqExact(partition) FROM system.parts "
        "WHERE active AND database = 'dnma' AND (table LIKE 'visits%' OR table = 'user_index') "
        "AND table NOT LIKE '%_stage' "
        "GROUP BY table ORDER BY table").result_rows
    return {t: {"rows": int(n), "bytes": int(b), "bytes_per_row": round(int(b) / max(int(n), 1), 1),
                "partitions": int(p)} for t, b, n, p in rows if int(n)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help=f"fraction of the {ESTABLISHMENTS:,} establishments (every row count follows)")
    parser.add_argument("--days", type=int, default=180, help="school days generated (from the rentrée 2025)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each chart query (after one warm-up)")
    parser.add_argument("--week", type=int, default=2, help="which school week's visits to generate (1 = the first)")
    parser.add_argument("--dir", default="", help="chDB directory (default: a fresh temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip the generation when --dir holds a previous run's data (same arguments)")
    args = parser.parse_args()
    if not 0 < args.scale <= 10 or not 5 <= args.days <= 200 or args.runs < 1 or args.week < 1:
        print("national_year: need 0 < --scale <= 10, 5 <= --days <= 200, --runs >= 1, --week >= 1",
              file=sys.stderr)
        return 2

    establishments = max(1, round(ESTABLISHMENTS * args.scale))
    days = school_days(args.days)
    mondays = sorted({d - timedelta(days=d.weekday()) for d in days})
    whole_weeks = [m for m in mondays if all(m + timedelta(days=i) in days for i in range(5))]
    if len(whole_weeks) < args.week:
        print(f"national_year: --week {args.week}: only {len(whole_weeks)} whole school weeks in {args.days} days",
              file=sys.stderr)
        return 2
    monday = whole_weeks[args.week - 1]

    import clickhouse_connect

    from aggregator.migrate import migrate
    from dnma.settings import Settings

    root = Path(args.dir or tempfile.mkdtemp(prefix="dnma-national-year-"))
    settings = Settings(data_dir=root, clickhouse_dsn=f"chdb://{root / 'ch'}", hits_ttl_months=1200,
                        visits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    out: dict[str, Any] = {
        "scale": args.scale, "establishments": establishments, "school_days": len(days),
        "first_day": str(days[0]), "last_day": str(days[-1]), "profils": len(PROFIL_SHARES),
        "devices": len(DEVICES), "services": len(SERVICE_REACH), "runs": args.runs,
        "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(),
    }
    # --reuse: time the queries again on the data a previous run of the same arguments left in --dir.
    reuse = args.reuse and bool(_scalar(client, "EXISTS TABLE bench.rows"))
    if not reuse:
        t0 = time.monotonic()
        generate_referential(client, establishments)
        generate_base_rows(client, days)
        out["generate_base_s"] = round(time.monotonic() - t0, 1)
    out["reused"] = reuse
    base = client.query("SELECT count(), sum(visites), uniqExact(uai), uniqExact(day) FROM bench.rows").result_rows[0]
    out["model"] = {"cells": int(base[0]), "visits": int(base[1]), "active_establishments": int(base[2]),
                    "visits_per_day": round(int(base[1]) / max(int(base[3]), 1)),
                    "establishments_with_ent": _scalar(client, "SELECT countIf(has_ent) FROM bench.etab")}
    users = Users(_scalar(client, "SELECT sum(people) FROM bench.etab"))
    out["model"]["population"] = users.population
    if not reuse:
        out["generate_tiers_s"] = generate_tiers(client, settings, days, users)
        t0 = time.monotonic()
        if generate_user_index(client, users):
            out["generate_tiers_s"]["user_index"] = round(time.monotonic() - t0, 1)
        for table in ("visits_daily", "visits_territoires_daily", "visits_services_daily", "visits_weekly"):
            client.command(f"OPTIMIZE TABLE dnma.{table} FINAL")  # merged, as a settled past year is
    tiers = storage(client)
    out["tiers"] = {t: v for t, v in tiers.items() if t != "visits"}

    if not reuse:
        t0 = time.monotonic()
        generate_week_visits(client, monday)
        out["week_generate_s"] = round(time.monotonic() - t0, 1)
    out["week"] = {"monday": str(monday),
                   "visits": _scalar(client, "SELECT count() FROM dnma.visits"),
                   "uais": _scalar(client, "SELECT uniqExact(uai) FROM dnma.visits"),
                   "model_visits": _scalar(client, (
                       f"SELECT sum(visites) FROM bench.rows WHERE day BETWEEN '{monday}' AND '{monday + timedelta(days=6)}'"))}
    out["week"]["visits_storage"] = storage(client).get("visits", {})
    visits_note = f"dnma.visits holds one week ({out['week']['visits']:,} visits), not the year"
    out["dashboards"] = time_dashboards(client, days[-1] + timedelta(days=1), args.runs, visits_note)
    out["dashboards_max_p95_ms"] = {
        f"{s}/{slug}": d["max_p95_ms"] for s, r in out["dashboards"].items() for slug, d in r["dashboards"].items()}
    out["loadavg_after_dashboards"] = os.getloadavg()
    out["exports"] = time_exports(client, monday)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
