"""The reporting API's DNMA module, in Matomo's style: the open-data breakdowns of the weekly exports
(aggregator.exports, fr-en-dnma-par-uai-*) so that BI tools read the ministry's figures through the
same API. One definition: each method runs its export's own query (exports.query), narrowed to the
sites asked for, a perimeter token's establishments and the segment, bucketed by the API's period.

A row per UAI and period: `label` the UAI, the export's shared columns (académie, commune, ...), then
per breakdown X `visites_X`, `utilisateurs_X` (exact: rollups.USER_KEY, as the export) and `duree_X`
in seconds (the export writes it as [h]h:mm:ss).

DNMA.getDeploiement: the deployment census's establishments (dnma.indicators: public ones with a
degree) inside the declared perimeters of the sites asked for (`perimetres_ent`), a row each per
period, `actif` when it had a visit through any ENT in the last settings.active_school_weeks school weeks ending
with the period's last day (the census's rule), `actif_sites` through the sites asked for (the
tagging coverage's rule: a site is never credited with another's)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aggregator import exports
from aggregator.reporting_actions import ReportFilter, ShapeError
from aggregator.reporting_person import matching
from aggregator.rollups import inline_dates
from dnma.datatable import Table
from dnma.indicators import ACTIVE_SCHOOL_WEEKS, PERIMETERS_TABLE, active_sql, census_sql

# DNMA method -> the export whose figures it answers.
DATASETS = {
    "DNMA.getProfils": "fr-en-dnma-par-uai-profils",
    "DNMA.getServices": "fr-en-dnma-par-uai-services",
    "DNMA.getAppareils": "fr-en-dnma-par-uai-appareils",
    "DNMA.getProfilsAppareils": "fr-en-dnma-par-uai-profils-appareils",
}
# A perimeter token's establishments: its kind -> the `visits` column (from the referential) that
# places a visit's UAI, as the dashboards' row-level security does.
PERIMETER_COLUMNS = {"academie": "academie", "departement": "departement", "region": "region", "projet": "projet"}


def perimeter_condition(establishments: tuple[str, str] | None) -> tuple[str, dict[str, Any]]:
    """SQL on `visits` of a perimeter (kind, value), its value a parameter; nothing for None."""
    if establishments is None:
        return "", {}
    kind, value = establishments
    column = PERIMETER_COLUMNS.get(kind)
    if column is None:  # a kind the access model does not know: see nothing rather than everything
        return "0", {}
    return f"`{column}` = {{perimetre:String}}", {"perimetre": value}


def breakdown(client: Any, f: ReportFilter, dataset_name: str,
              establishments: tuple[str, str] | None = None) -> Any:
    dataset = exports.DATASETS[dataset_name]
    condition, extra = perimeter_condition(establishments)
    where = "site_id IN {sites:Array(UInt32)}" + (f" AND {condition}" if condition else "") + f.visits_where
    sql = exports.query(dataset, f.database, where=where, bucket=f.bucket("day"))
    n_shared = len(exports.SHARED_COLUMNS)
    measures = dataset.columns[n_shared:]
    by_label: dict[str, list[dict[str, Any]]] = {}
    if not f.beyond_storage:
        parameters = {**f.parameters, **extra, "debut": f.parameters["first"], "fin": f.parameters["last"]}
        for row in client.query(inline_dates(sql, parameters), parameters=parameters).result_rows:
            out: dict[str, Any] = {"label": str(row[1])}
            out |= {name: str(v) for name, v in zip(exports.SHARED_COLUMNS[2:], row[2:n_shared], strict=True)}
            out |= {name: int(v) for name, v in zip(measures, row[n_shared:], strict=True)}
            by_label.setdefault(f.label_of(row[0]), []).append(out)
    # The export's order (by UAI), then the generic filters.
    return f.shape(by_label, lambda rows: Table(f.filters.rows(matching(client, f, rows or []))))


MAX_DEPLOYMENT_PERIODS = 31  # one census query per period


def _territory(establishments: tuple[str, str] | None, alias: str, db: str) -> tuple[str, dict[str, Any]]:
    """A perimeter token's condition on the census's establishments (`alias`), value a parameter."""
    if establishments is None:
        return "1", {}
    kind, value = establishments
    if kind == "projet":
        return (f"{alias}.uai IN (SELECT uai FROM {db}.{PERIMETERS_TABLE} FINAL WHERE projet = {{perimetre:String}})",
                {"perimetre": value})
    if kind in ("academie", "departement", "region"):
        return f"{alias}.{kind} = {{perimetre:String}}", {"perimetre": value}
    return "0", {}


def deployment(client: Any, f: ReportFilter, establishments: tuple[str, str] | None = None,
               active_weeks: int | None = None) -> Any:
    if f.visits_where:  # a segment
        raise ShapeError("DNMA.getDeploiement counts establishments, not visits: it takes no segment")
    if len(f.periods.spans) > MAX_DEPLOYMENT_PERIODS:
        raise ShapeError(f"DNMA.getDeploiement answers at most {MAX_DEPLOYMENT_PERIODS} periods at once")
    db = f.database
    territory, extra = _territory(establishments, "e", db)
    sql = f"""
SELECT e.uai, e.nom, e.degre, e.niveau, e.academie, e.departement, e.region,
  toUInt8(a.uai != '') AS actif, toUInt8(a.uai != '' AND hasAny(a.sites, {{sites:Array(UInt32)}})) AS actif_sites
FROM ({census_sql(db)}) AS e
INNER JOIN (SELECT DISTINCT uai FROM {db}.{PERIMETERS_TABLE} FINAL WHERE site_id IN {{sites:Array(UInt32)}}) AS p
  ON p.uai = e.uai
LEFT JOIN ({active_sql(db, "{dep_today:Date}", "{weeks:UInt32}")}) AS a ON a.uai = e.uai
WHERE {territory}
ORDER BY e.uai"""
    names = ("etablissement", "degre", "niveau", "academie", "departement", "region", "actif", "actif_sites")
    by_label: dict[str, list[dict[str, Any]]] = {}
    for span in f.periods.spans:
        if span.first > f.parameters["last"]:  # past what ClickHouse's Date holds: nothing to read
            continue
        parameters = {"sites": list(f.site_ids), "dep_today": min(span.last, f.parameters["last"]),
                      "weeks": active_weeks or ACTIVE_SCHOOL_WEEKS, **extra}
        rows = []
        for row in client.query(sql, parameters=parameters).result_rows:
            out: dict[str, Any] = {"label": str(row[0])}
            out |= {n: (int(v) if n.startswith("actif") else str(v)) for n, v in zip(names, row[1:], strict=True)}
            rows.append(out)
        by_label[span.label] = rows
    return f.shape(by_label, lambda rows: Table(f.filters.rows(matching(client, f, rows or []))))


Handler = Callable[..., Any]


def _method(dataset_name: str) -> Handler:
    def handler(client: Any, f: ReportFilter, params: Mapping[str, str], slots: Mapping[int, str] | None,
                establishments: tuple[str, str] | None = None, active_weeks: int | None = None) -> Any:
        return breakdown(client, f, dataset_name, establishments)
    return handler


METHODS: dict[str, Handler] = {method: _method(name) for method, name in DATASETS.items()}
METHODS["DNMA.getDeploiement"] = (lambda client, f, params, slots, establishments=None, active_weeks=None:
                                  deployment(client, f, establishments, active_weeks))
