"""The tagging conformance report (aggregator/conformance, `dnma conformance`) on real chDB: a site
with known, injected defects (invalid UAIs, unknown profils and services, TIERS without OUTIL, UAIs
outside its perimeter, establishments never seen, duplicates, clock skew) and hits just outside the
window; every figure of the report equals SQL written here (not the report's own), and the files the
command writes hold them. Bad arguments: one line and a non-zero exit."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.conformance import criteria as c
from aggregator.conformance import figures, render
from dnma import vocab
from dnma.settings import Settings, get_settings
from dnma.sites import SiteRegistry
from tests.quality.conftest import (
    REF_35_1D,
    REF_35_2D,
    REF_94_1D,
    SITE_BZH,
    SITE_CRE,
    hit,
    insert_hits,
    paris,
)

DEBUT, FIN = date(2024, 3, 4), date(2024, 3, 8)  # a school week, Monday to Friday
USED = ("accueil", "notes", "cahier_textes", "messagerie_instantanee", "absences", "ressource_multimedia")
SEEN = REF_35_1D[:25] + REF_35_2D[:5]  # 10 establishments of the perimeter never seen
BAD_LETTER, BAD_DEP = "0350000X", "0990001A"  # wrong check letter; département 099 does not exist
OUTSIDE = REF_94_1D[:2]  # valid, in the referential, Val-de-Marne: outside a 035 perimeter


def _defective_site() -> list[dict[str, Any]]:
    start = paris(2024, 3, 4, 8)
    rows: list[dict[str, Any]] = []
    n = 0

    def add(count: int, **values: Any) -> list[dict[str, Any]]:
        nonlocal n
        made = []
        for _ in range(count):
            service = values.get("service", USED[n % len(USED)])
            tiers = service == "ressource_multimedia"
            base = {"service": service, "uai": SEEN[n % len(SEEN)], "profil": ("ELEVE", "ENSEIGNANT")[n % 2],
                    "type": "TIERS" if tiers else "NATIF", "outil": "EDUTHEQUE" if tiers else "",
                    "visitor_id": 5000 + n % 97, "pv_id": f"pv{n:06d}", "url": f"https://ent.bzh.example/p/{n % 40}?q=x"}
            ts = start + timedelta(days=(n % 5), seconds=60 * (n // 5))
            made.append(hit(SITE_BZH, ts, **{**base, **values}))
            n += 1
        rows.extend(made)
        return made

    clean = add(1200)
    add(30, uai=BAD_LETTER, flags=["invalid_uai"])
    add(10, uai=BAD_DEP, flags=["invalid_uai"])
    add(6, uai="", flags=["missing_uai"])
    add(40, profil="PROF", flags=["unknown_profil"])
    add(20, profil="", flags=["missing_profil"])
    add(25, service="messagerie", flags=["unknown_service"])
    add(15, service="ressource_multimedia", type="TIERS", outil="")
    add(5, service="notes", type="NATIF", outil="PRONOTE")
    add(10, type="NATIVE", flags=["unknown_type"])
    add(20, uai=OUTSIDE[0], flags=["outside_perimeter"])
    add(7, uai=OUTSIDE[1], flags=["outside_perimeter"])
    # Duplicates: 12 page views sent twice, one second apart (same pv_id, same hit).
    rows.extend({**h, "ts": h["ts"] + timedelta(seconds=1), "received_at": h["ts"] + timedelta(seconds=1)}
                for h in clean[:12])
    # Clock skew: 8 hits dated an hour after their reception (beyond quality_clock_skew_s).
    for h in add(8):
        h["received_at"] = h["ts"] - timedelta(hours=1)
    # Just outside the window (Paris days): never counted.
    rows.append(hit(SITE_BZH, paris(2024, 3, 3, 23, 59), uai=BAD_LETTER, flags=["invalid_uai"], pv_id="out1"))
    rows.append(hit(SITE_BZH, paris(2024, 3, 9, 0, 0), uai=BAD_LETTER, flags=["invalid_uai"], pv_id="out2"))
    # Another site in the window: never counted.
    rows.extend(hit(SITE_CRE, paris(2024, 3, 5, 10) + timedelta(minutes=i), uai=BAD_LETTER, flags=["invalid_uai"],
                    pv_id=f"cre{i}") for i in range(50))
    return rows


# ---- the independent SQL: by Paris calendar day, validity recomputed from the UAI text itself.
IN_WINDOW = "site_id = 1 AND toDate(ts, 'Europe/Paris') BETWEEN '2024-03-04' AND '2024-03-08'"
VALID = ("(match(uai, '^[0-9]{7}[A-Z]$') AND substring('ABCDEFGHJKLMNPRSTUVWXYZ', "
         "toUInt32OrZero(substring(uai, 1, 7)) % 23 + 1, 1) = substring(uai, 8, 1) "
         "AND (toUInt16OrZero(substring(uai, 1, 3)) BETWEEN 1 AND 95 OR toUInt16OrZero(substring(uai, 1, 3)) "
         "BETWEEN 971 AND 989 OR substring(uai, 1, 3) IN ('620', '720')))")


def _independent(client: Any, where: str = "1") -> dict[str, tuple[int, int]]:
    row = client.query(
        "SELECT count(), countIf(" + VALID + "), "
        "countIf(profil IN ('ELEVE', 'ENSEIGNANT', 'PARENT', 'ADMIN_VIE_SCOL_TECH', 'PERSONNEL_COLLECTIVITE', "
        "'AUTRE')), countIf(has({services:Array(String)}, service)), countIf(type = 'NATIF' OR type = 'TIERS'), "
        "countIf((type = 'TIERS' AND outil != '') OR (type = 'NATIF' AND outil = '')), "
        "countIf(dateDiff('second', received_at, ts) > 300) "
        f"FROM dnma.hits WHERE {IN_WINDOW} AND {where}", parameters={"services": list(vocab.SERVICES)}).result_rows[0]
    hits, valid, profil, service, typ, outil, future = (int(v) for v in row)
    # Every injected hit has its own pv_id but the re-sent ones: duplicates = hits - distinct pv_ids.
    dup = int(client.query(f"SELECT count() - uniqExact(visitor_id, pv_id) FROM dnma.hits WHERE {IN_WINDOW} "
                           f"AND {where}").result_rows[0][0])
    return {"uai_valide": (valid, hits), "profil_connu": (profil, hits), "service_connu": (service, hits),
            "type_connu": (typ, hits), "outil_conforme": (outil, typ), "doublons": (dup, hits),
            "horloge": (future, hits)}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Settings]]:
    """conftest's `env` (two sites, the small referential) once for the module, with the defects."""
    import clickhouse_connect

    from aggregator.migrate import migrate
    from dnma.sites import dump_sites
    from tests.quality.conftest import load_referential, sites

    tmp = tmp_path_factory.mktemp("conformance")
    dump_sites(sites(), tmp / "sites.yaml")
    settings = Settings(data_dir=tmp, sites_file=tmp / "sites.yaml", clickhouse_dsn=f"chdb://{tmp / 'ch'}",
                        super_user_token="super-token", collector_port=1, hits_ttl_months=1200)
    client = clickhouse_connect.get_client(dsn=settings.resolved_dsn)
    migrate(client, settings)
    load_referential(client)
    insert_hits(client, _defective_site())
    yield client, settings
    client.close()


def test_figures_equal_independent_sql(loaded: tuple[Any, Any]) -> None:
    client, settings = loaded
    site = SiteRegistry.load(settings.resolved_sites_file).get(SITE_BZH)
    assert site is not None
    report = figures.build(client, settings, site, DEBUT, FIN)
    expected = _independent(client)
    assert report.hits == expected["uai_valide"][1] == 1200 + 30 + 10 + 6 + 40 + 20 + 25 + 15 + 5 + 10 + 27 + 12 + 8
    for key, (num, den) in expected.items():
        f = report.figure(key)
        assert (f.numerator, f.denominator) == (num, den), key
        assert f.value == pytest.approx(num / den)
        crit = c.BY_KEY[key]
        ok = num / den >= crit.threshold if crit.at_least else num / den <= crit.threshold
        assert f.verdict == (c.CONFORME if ok else c.NON_CONFORME), key
    # The injected defects themselves, so that the SQL above cannot agree with the report by accident.
    assert expected["uai_valide"][0] == report.hits - 46
    assert expected["doublons"][0] == 12 and expected["horloge"][0] == 8
    assert report.figure("uai_valide").verdict == c.NON_CONFORME  # 46 of 1408: 96.7 % < 98 %
    assert report.figure("horloge").verdict == c.CONFORME

    # Per service: the same SQL restricted to each service of the window.
    services = [s for (s,) in client.query(f"SELECT DISTINCT service FROM dnma.hits WHERE {IN_WINDOW}").result_rows]
    assert sorted(report.services()) == sorted(services) and "messagerie" in services
    for service in services:
        per = _independent(client, f"service = '{service}'")
        for key in ("uai_valide", "profil_connu", "type_connu", "outil_conforme", "doublons", "horloge"):
            f = report.figure(key, service)
            assert (f.numerator, f.denominator) == per[key], (service, key)
    assert report.figure("outil_conforme", "ressource_multimedia").numerator == (
        report.figure("outil_conforme", "ressource_multimedia").denominator - 15)

    # The services never seen: the 25 minus those with a hit in the window.
    [(never,)] = client.query(f"SELECT arrayFilter(s -> NOT has(groupUniqArray(service), s), {{s:Array(String)}}) "
                              f"FROM dnma.hits WHERE {IN_WINDOW}", parameters={"s": list(vocab.SERVICES)}).result_rows
    assert report.services_never_seen == list(never) and len(never) == 25 - len(USED)
    f = report.figure("services_jamais_vus")
    assert (f.numerator, f.verdict) == (len(never), c.A_VERIFIER)

    # Outside the perimeter (035, 1D and 2D): valid UAIs of another département.
    [(outside,)] = client.query(f"SELECT countIf({VALID} AND substring(uai, 1, 3) != '035') FROM dnma.hits "
                                f"WHERE {IN_WINDOW}").result_rows
    f = report.figure("hors_perimetre")
    assert (f.numerator, f.denominator, f.verdict) == (outside, report.hits, c.NON_CONFORME) and outside == 27
    assert [r[:2] for r in report.examples["hors_perimetre"].rows] == [(OUTSIDE[0], 20), (OUTSIDE[1], 7)]

    # Establishments of the perimeter seen: the referential's 035 1D/2D UAIs with a valid hit.
    [(seen, total)] = client.query(
        f"SELECT countIf(uai IN (SELECT uai FROM dnma.hits WHERE {IN_WINDOW} AND {VALID})), count() "
        "FROM dnma.etablissements WHERE departement_code = '035' AND degre IN ('1D', '2D')").result_rows
    f = report.figure("etablissements_vus")
    assert (f.numerator, f.denominator) == (seen, total) == (30, 40) and f.verdict == c.CONFORME
    assert sorted(r[0] for r in report.examples["etablissements_jamais_vus"].rows) == sorted(
        set(REF_35_1D + REF_35_2D) - set(SEEN))

    # The worst examples name the defects.
    assert report.examples["uai_invalides"].rows[:2] == [(BAD_LETTER, 30, "UAI invalide (lettre de contrôle K attendue)"),
                                                         (BAD_DEP, 10, "UAI invalide (département « 099 » inexistant)")]
    assert report.examples["profil_inconnus"].rows == [("PROF", 40), ("(absent)", 20)]
    assert report.examples["service_inconnus"].rows == [("messagerie", 25)]
    assert report.examples["type_inconnus"].rows == [("NATIVE", 10)]
    assert report.examples["outil"].rows == [("TIERS", "(absent)", 15), ("NATIF", "PRONOTE", 5)]
    assert report.examples["doublons"].rows == [(f"/p/{i}", 1) for i in sorted(range(12), key=str)][:figures.EXAMPLES]
    assert [r[2] for r in report.examples["horloge"].rows] == ["1 h 00 min"] * 8
    assert all("?" not in r[3] for r in report.examples["horloge"].rows)  # paths, never query strings


def test_command_writes_html_and_csv(loaded: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dnma conformance` with the stack stopped: it opens the storage itself (this process's chDB)."""
    from cli import main as cli

    client, settings = loaded
    monkeypatch.setenv("DNMA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DNMA_SITES_FILE", str(settings.sites_file))
    monkeypatch.setenv("DNMA_CLICKHOUSE_DSN", settings.clickhouse_dsn)
    get_settings.cache_clear()
    umask = os.umask(0o022)
    try:
        assert cli.main(["conformance", "--site", "1", "--from", "2024-03-04", "--to", "2024-03-08",
                         "--out", str(tmp_path / "out")]) == 0
    finally:
        os.umask(umask)
        get_settings.cache_clear()
    stem = tmp_path / "out" / "conformance-site1-2024-03-04_2024-03-08"
    rows = list(csv.DictReader(io.StringIO(stem.with_suffix(".csv").read_text(encoding="utf-8")), delimiter=";"))
    site_rows = {r["critere"]: r for r in rows if r["portee"] == "site"}
    assert list(site_rows) == [k.key for k in c.SITE_CRITERIA]
    expected = _independent(client)
    for key, (num, den) in expected.items():
        assert (int(site_rows[key]["numerateur"]), int(site_rows[key]["denominateur"])) == (num, den), key
        assert float(site_rows[key]["valeur"]) == pytest.approx(num / den, abs=1e-6)
    assert site_rows["uai_valide"]["verdict"] == "non conforme"
    assert site_rows["uai_valide"]["reference"] == "docs/tagging.md#règle-uai"
    assert {r["service"] for r in rows if r["portee"] == "service"} >= {*USED, "messagerie"}
    page = stem.with_suffix(".html").read_text(encoding="utf-8")
    assert '<html lang="fr">' in page and "@media print" in page
    for text in ("Rapport de conformité du marquage", BAD_LETTER, "lettre de contrôle K attendue", "PROF",
                 "Visioconférence", OUTSIDE[0], "non conforme", "1 h 00 min"):
        assert text in page, text
    assert "?q=x" not in page  # worst examples show pages, never query strings
    # The CSV rendered again from the report is the same file (render is deterministic).
    site = SiteRegistry.load(settings.resolved_sites_file).get(SITE_BZH)
    assert site is not None
    buf = io.StringIO()
    render.write_csv(figures.build(client, settings, site, DEBUT, FIN), buf)
    assert buf.getvalue() == stem.with_suffix(".csv").read_text(encoding="utf-8")


BAD = [
    (["--site", "x", "--from", "2024-03-04", "--to", "2024-03-08"], "is not a site id"),
    (["--site", "1", "--from", "2024-13-04", "--to", "2024-03-08"], "is not a date YYYY-MM-DD"),
    (["--site", "1", "--from", "2024-03-08", "--to", "2024-03-04"], "is after --to"),
    (["--site", "1", "--from", "2020-01-01", "--to", "2024-03-04"], "spans more than"),
    (["--site", "42", "--from", "2024-03-04", "--to", "2024-03-08"], "no site 42 in the sites registry"),
]


def _registry_env(tmp_path: Path) -> dict[str, str]:
    from dnma.sites import dump_sites
    from tests.quality.conftest import sites

    dump_sites(sites(), tmp_path / "sites.yaml")
    return {"DNMA_DATA_DIR": str(tmp_path), "DNMA_SITES_FILE": str(tmp_path / "sites.yaml"),
            "DNMA_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"}


@pytest.mark.parametrize("args, says", BAD)
def test_bad_arguments_one_line(tmp_path: Path, args: list[str], says: str, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main as cli

    for k, v in _registry_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    umask = os.umask(0o022)
    try:
        assert cli.main(["conformance", *args]) == 2
    finally:
        os.umask(umask)
        get_settings.cache_clear()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnma conformance: ") and says in lines[0], lines
    assert not (tmp_path / "ch").exists()  # refused before anything opened the storage


def test_bad_arguments_through_the_dnma_command(tmp_path: Path) -> None:
    """The real command line, once: no usage text, no traceback."""
    args, says = BAD[1]
    out = subprocess.run([sys.executable, "-m", "cli", "conformance", *args], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **_registry_env(tmp_path)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, out.stderr


def test_marquage_dashboard_says_what_the_report_says(loaded: tuple[Any, Any]) -> None:
    """The Marquage dashboard's per-site table (its dataset's SQL as Superset runs it, today pinned)
    has the report's shares and verdicts over the same days: one definition of each criterion."""
    from dnma_superset.dashboards import DASHBOARDS
    from dnma_superset.marquage_sql import MARQUAGE_DAYS, SHARES, seen_verdict_sql

    from aggregator.checks import perimetres
    from tests.superset.test_chart_queries import chart_rows

    client, settings = loaded
    today = date(2024, 3, 9)
    perimetres.sync(client, settings, force=True)  # the loader's duty: each site's perimeter in perimetres_ent
    charts = {ch.key: ch for d in DASHBOARDS if d.slug == "dnma-marquage" for ch in d.charts()}
    site = SiteRegistry.load(settings.resolved_sites_file).get(SITE_BZH)
    assert site is not None
    report = figures.build(client, settings, site, today - timedelta(days=MARQUAGE_DAYS), today)
    rows = {r[0]: r for r in chart_rows(client, charts["mar_sites"], today)}
    assert set(rows) == {str(SITE_BZH), str(SITE_CRE)}
    _site, projet, hits, *cells = rows[str(SITE_BZH)]
    assert (projet, hits) == ("ENT_BZH", report.hits)
    for i, k in enumerate(SHARES):
        share, verdict = cells[2 * i], cells[2 * i + 1]
        assert share == pytest.approx(report.figure(k.key).value), k.key
        assert verdict == report.figure(k.key).verdict, k.key
    # Superset names each metric (`expr AS name`): all of a dataset's metrics in one query, so that
    # no name is read back inside another metric (ClickHouse's ILLEGAL_AGGREGATION).
    from dnma_superset.dataset_sql import SQL
    from dnma_superset.datasets import DATASETS

    from tests.superset.test_chart_queries import render

    for name in ("marquage", "marquage_services", "marquage_etablissements", "marquage_hors_perimetre",
                 "marquage_exemples"):
        metrics = ", ".join(f"{sql} AS {metric}" for metric, _label, sql, _fmt in DATASETS[name].metrics)
        assert client.query(f"SELECT site_id, {metrics} FROM ({render(SQL[name], today)}) GROUP BY site_id "
                            f"ORDER BY {DATASETS[name].metrics[0][0]}").result_rows, name
    # The perimeter's establishments seen: perimetres_ent (the same rule) against the report.
    [(found, total, verdict)] = client.query(
        f"SELECT countIf(hits > 0), count(), {seen_verdict_sql()} FROM ({render(SQL['marquage_etablissements'], today)}) "
        f"WHERE site_id = {SITE_BZH}").result_rows
    f = report.figure("etablissements_vus")
    assert (found, total, verdict) == (f.numerator, f.denominator, f.verdict) == (30, 40, c.CONFORME)
    never_rows = [r for r in chart_rows(client, charts["mar_etablissements"], today) if r[0] == str(SITE_BZH) and r[-1] == 0]
    assert sorted(r[1] for r in never_rows) == sorted(r[0] for r in report.examples["etablissements_jamais_vus"].rows)
    # Every chart of the dashboard has rows on this data; the 25 services, those never seen at 0.
    for key, chart in charts.items():
        assert chart_rows(client, chart, today), key
    never = {r[0] for r in chart_rows(client, charts["mar_services_25"], today) if r[1] == 0}
    assert never == {vocab.SERVICE_LABELS[s] for s in vocab.SERVICES if s not in USED}
    # Per site: site 1 never sent 25 - len(USED) services, site 2 sent 'notes' only.
    assert chart_rows(client, charts["mar_jamais_vus"], today) == [((25 - len(USED)) + (25 - 1),)]


def test_marquage_outside_perimeter_and_examples_are_the_reports(loaded: tuple[Any, Any]) -> None:
    """The Marquage dashboard's UAIs outside the perimeter (its SQL over perimetres_ent) are the
    report's `figures` (perimeter.outside in Python), for each site: the same UAIs and hits, share,
    verdict; its latest non-conforming hits name the report's defects, paths without query string."""
    from dnma_superset.dashboards import DASHBOARDS
    from dnma_superset.dataset_sql import SQL
    from dnma_superset.marquage_sql import EXAMPLES_PER_DEFECT, MARQUAGE_DAYS, uai_expected_sql

    from aggregator.checks import perimetres
    from tests.superset.test_chart_queries import chart_rows, render

    client, settings = loaded
    today = date(2024, 3, 9)
    perimetres.sync(client, settings, force=True)
    charts = {ch.key: ch for d in DASHBOARDS if d.slug == "dnma-marquage" for ch in d.charts()}
    registry = SiteRegistry.load(settings.resolved_sites_file)
    table = {r[0]: r for r in chart_rows(client, charts["mar_hors_perimetre_sites"], today)}
    assert set(table) == {str(SITE_BZH), str(SITE_CRE)}
    for site_id in (SITE_BZH, SITE_CRE):
        site = registry.get(site_id)
        assert site is not None
        report = figures.build(client, settings, site, today - timedelta(days=MARQUAGE_DAYS), today)
        outside = [tuple(r) for r in client.query(
            f"SELECT uai, hits FROM ({render(SQL['marquage_hors_perimetre'], today)}) "
            f"WHERE site_id = {site_id} AND hors_perimetre = 1 ORDER BY hits DESC, uai").result_rows]
        ex = report.examples["hors_perimetre"]
        assert outside == [r[:2] for r in ex.rows] and len(outside) == ex.total, site_id
        f = report.figure("hors_perimetre")
        _site, _projet, hits, share, verdict, n, listed = table[str(site_id)]
        assert (hits, n, verdict) == (report.hits, ex.total, f.verdict), site_id
        assert share == pytest.approx(f.value)
    assert table[str(SITE_BZH)][4:] == (c.NON_CONFORME, 2, f"{OUTSIDE[0]} (20), {OUTSIDE[1]} (7)")
    assert table[str(SITE_CRE)][3:] == (0.0, c.NON_EVALUABLE, 0, "aucun")  # 50 hits < the floor
    [(share,)] = chart_rows(client, charts["mar_hors_perimetre"], today)
    assert share == pytest.approx(27 / (table[str(SITE_BZH)][2] + 50))  # over both sites' hits

    # The latest non-conforming hits: every defect of the report, its words, at most N per site and defect.
    rows = [r for r in chart_rows(client, charts["mar_exemples"], today) if r[1] == SITE_BZH]
    defects = {r[3] for r in rows}
    assert defects == {"UAI invalide", "PROFIL inconnu", "SERVICE inconnu", "TYPE inconnu", "OUTIL contraire à la règle"}
    assert all(sum(1 for r in rows if r[3] == d) <= EXAMPLES_PER_DEFECT for d in defects)
    expected = {(r[3], r[4], r[5]) for r in rows}
    assert ("UAI invalide", BAD_LETTER, "lettre de contrôle K attendue") in expected
    # Each invalid UAI's expectation is the report's (uai.problem), whichever rule it breaks.
    from dnma import uai as uai_rules

    invalid = [(r[4], r[5]) for r in rows if r[3] == "UAI invalide" and r[4] != "(absent)"]
    assert invalid and all(want in uai_rules.problem(sent) for sent, want in invalid), invalid
    for sent in (BAD_LETTER, BAD_DEP, "0990001X", "9770001A", "35ABC", "03500001"):  # each rule, shown or not
        [(want,)] = client.query(f"SELECT {uai_expected_sql('uai')} FROM (SELECT {{u:String}} AS uai)",
                                 parameters={"u": sent}).result_rows
        assert want in uai_rules.problem(sent) and uai_rules.problem(sent), (sent, want)
    assert ("UAI invalide", "(absent)", "UAI non envoyé") in expected
    assert ("SERVICE inconnu", "messagerie", "un des 25 services du plan de marquage") in expected
    assert ("OUTIL contraire à la règle", "TIERS / (absent)", "OUTIL renseigné") in expected
    assert ("OUTIL contraire à la règle", "NATIF / PRONOTE", "OUTIL vide") in expected
    assert all("?" not in r[6] and "://" not in r[6] for r in rows) and any(r[6].startswith("/p/") for r in rows)
    # The latest ones: the last invalid UAI sent in the window (9 March 00:00, the latest hit) is shown.
    [(latest,)] = client.query("SELECT max(ts) FROM dnma.hits WHERE site_id = 1 AND has(flags, 'invalid_uai')").result_rows
    assert max(r[0] for r in rows if r[3] == "UAI invalide") == latest


def test_the_guide_states_the_thresholds_of_the_code() -> None:
    """docs/tagging.md's table of criteria is the code's (criteria.py): same labels, thresholds, rules."""
    from dnma.settings import REPO_ROOT

    guide = (REPO_ROOT / "docs" / "tagging.md").read_text(encoding="utf-8")
    for k in c.SITE_CRITERIA:
        anchor = k.reference.split("#", 1)[1]
        assert f"| {k.label} | {k.threshold_text()} | {k.breach} | [règle](#{anchor}) |" in guide, k.key
        assert f'<a id="{anchor}"></a>' in guide, anchor
