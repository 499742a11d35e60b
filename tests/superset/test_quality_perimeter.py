"""The Qualité datasets under each perimeter's row-level security, on real chDB (the referential,
sites and visits of tests/quality/test_indicators.py, plus alerts and hits written here): a
département, académie or ENT user sees the alerts and hit quality of their own perimeter, and the
alerts on the whole pipeline, never another perimeter's; the check states count their alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from dnma_superset.dataset_sql import SQL
from dnma_superset.datasets import DATASETS
from dnma_superset.provision import RolePerimeter, rls_clause
from dnma_superset.quality_sql import CHECK_LABELS

from dnma.clock import PARIS
from tests.quality.conftest import make_uai
from tests.quality.test_indicators import (
    ACAD_RENNES,
    DEP_35,
    DEP_94,
    ENT_35,
    PROJET_35,
    PROJET_BZH,
    PU_35_1D,
    PU_94_1D,
    TODAY,
    db,  # noqa: F401 - the shared chDB fixture
)

CRETEIL = RolePerimeter("creteil", "academie", "Créteil")
# (check, scope_kind, scope_value) -> the perimeters that see the alert (besides the national one)
ALERTS = {
    ("ingestion", "pipeline", "loader"): {DEP_35, DEP_94, ACAD_RENNES, CRETEIL, PROJET_35, PROJET_BZH},
    ("volume", "uai", PU_35_1D[0]): {DEP_35, ACAD_RENNES},
    ("volume", "uai", PU_94_1D[0]): {DEP_94, CRETEIL},
    ("volume", "site", str(ENT_35)): {DEP_35, ACAD_RENNES, PROJET_35},  # ENT_35_1D declares 035
    ("volume", "projet", "ENT_BRETAGNE"): {DEP_35, ACAD_RENNES, PROJET_BZH},  # declares académie de Rennes
    ("volume", "academie", "Créteil"): {DEP_94, CRETEIL},
}
USERS = (DEP_35, DEP_94, ACAD_RENNES, CRETEIL, PROJET_35, PROJET_BZH)


@pytest.fixture(scope="module")
def quality(db: tuple[Any, list[Any]]) -> Any:  # noqa: F811 - the imported fixture
    client, _ = db
    seen = datetime(2024, 11, 6, 10, tzinfo=PARIS)
    client.insert("dnma.quality_alerts", [
        [check, kind, value, "24h", "warning", 1.0, 0.0, seen, seen, seen, seen, "open", "test", "{}", 1]
        for check, kind, value in ALERTS
    ], column_names=["check", "scope_kind", "scope_value", "window", "severity", "observed", "expected",
                     "window_start", "window_end", "first_seen", "last_seen", "status", "message", "details",
                     "version"])
    client.insert("dnma.quality_check_runs", [["volume", seen, 1.0, 5, 0, ""], ["ingestion", seen, 1.0, 1, 0, ""]],
                  column_names=["check", "ran_at", "duration_ms", "findings", "skipped", "error"])
    # Hits of ENT_35_1D on 5 Nov: two at a 094 school (placed in 094 by their UAI), one invalid and
    # one unknown UAI (placed in its declared perimeter, 035).
    values = [(PU_94_1D[0], "[]"), (PU_94_1D[0], "[]"), ("XYZ", "['invalid_uai']"), (make_uai(35, 999), "[]")]
    client.command("INSERT INTO dnma.hits (ts, received_at, site_id, projet, uai, flags) VALUES " + ", ".join(
        f"(toDateTime('2024-11-05 11:00:00', 'Europe/Paris'), toDateTime('2024-11-05 11:00:00', 'Europe/Paris'), "
        f"{ENT_35}, 'ENT_35_1D', '{uai}', {flags})" for uai, flags in values))
    return client


def _sql(name: str, perimeter: RolePerimeter | None) -> str:
    """The dataset as Superset runs it for the user: its Jinja rendered with the user's RLS rule
    (inside controles_qualite), the rule applied outside."""
    rule = rls_clause(DATASETS[name], perimeter) if perimeter else ""
    sql = SQL[name].replace("{{ dnma_today() }}", TODAY.isoformat())
    jinja = sql[sql.find("{% set dnma_rls"):sql.find("{% endif %}") + len("{% endif %}")] if "{% set" in sql else ""
    if jinja:
        sql = sql.replace(jinja, f" AND (({rule}))" if rule else "")
    assert "{" not in sql.replace("{}", ""), sql
    return f"SELECT * FROM ({sql}) WHERE {rule or 1}"


def _alerts(client: Any, perimeter: RolePerimeter | None) -> set[tuple[str, str, str]]:
    rows = client.query(f"SELECT controle, scope_kind, scope_value FROM ({_sql('alertes_qualite', perimeter)})")
    return {tuple(r) for r in rows.result_rows} & set(ALERTS)


def test_each_perimeter_sees_its_alerts_and_the_pipeline_ones(quality: Any) -> None:
    assert _alerts(quality, None) == set(ALERTS)
    for user in USERS:
        assert _alerts(quality, user) == {a for a, who in ALERTS.items() if user in who}, user.name
    labels = quality.query(f"SELECT DISTINCT libelle_controle, gravite, portee FROM ({_sql('alertes_qualite', DEP_94)})"
                           " WHERE controle = 'volume'").result_rows
    assert {tuple(r) for r in labels} == {("Volume quotidien inhabituel", "Avertissement", "Établissement"),
                                          ("Volume quotidien inhabituel", "Avertissement", "Académie")}


def test_check_states_count_the_open_alerts_of_the_perimeter(quality: Any) -> None:
    def counts(user: RolePerimeter | None) -> dict[str, tuple[int, str]]:
        rows = quality.query(f"SELECT controle, alertes_ouvertes, etat FROM ({_sql('controles_qualite', user)})")
        return {r[0]: (r[1], r[2]) for r in rows.result_rows if r[0] in ("volume", "ingestion")}

    assert counts(None)["volume"][0] == 5
    assert counts(DEP_94) == {"volume": (2, "En alerte"), "ingestion": (1, "En alerte")}
    assert counts(PROJET_BZH)["volume"] == (1, "En alerte")
    labels = quality.query(f"SELECT controle, libelle_controle FROM ({_sql('controles_qualite', None)})").result_rows
    assert all(label == CHECK_LABELS[code] for code, label in labels)


def test_hit_quality_is_placed_by_uai_else_by_the_ent_perimeter(quality: Any) -> None:
    def figures(user: RolePerimeter | None) -> tuple[int, int, int]:
        (row,) = quality.query(f"SELECT sum(hits), sum(hits_uai_invalide), sum(hits_uai_inconnu) "
                               f"FROM ({_sql('qualite_hits', user)}) WHERE day = '2024-11-05' "
                               f"AND projet = 'ENT_35_1D'").result_rows
        return tuple(int(v) for v in row)  # type: ignore[return-value]

    everything = figures(None)
    # 094 sees the two hits at its school, no invalid or unknown one (ENT_35_1D declares 035 only).
    assert figures(DEP_94) == (2, 0, 0)
    dep35 = figures(DEP_35)
    assert dep35[1:] == (1, 1) and dep35[0] == everything[0] - 2
    assert figures(PROJET_35) == everything
    assert figures(PROJET_BZH) == (0, 0, 0)


def test_a_site_editor_sees_its_site_alerts_and_hits(quality: Any) -> None:
    # An ENT site's editor (Superset level "site", value: the site id): the alerts about its site
    # and the pipeline's, its site's hit quality; never another site's, a project's or a territory's.
    editor = RolePerimeter("editeur", "site", str(ENT_35))
    assert _alerts(quality, editor) == {("ingestion", "pipeline", "loader"), ("volume", "site", str(ENT_35))}
    assert _alerts(quality, RolePerimeter("autre", "site", "999")) == {("ingestion", "pipeline", "loader")}
    (sites,) = quality.query(f"SELECT groupUniqArray(site_id), sum(hits) FROM ({_sql('qualite_hits', editor)})").result_rows
    assert sites[0] == [ENT_35] and sites[1] > 0
    states = quality.query(f"SELECT controle, alertes_ouvertes FROM ({_sql('controles_qualite', editor)})").result_rows
    assert {r[0]: r[1] for r in states if r[0] in ("volume", "ingestion")} == {"volume": 1, "ingestion": 1}
