"""The reporting API's DNMA module, in Matomo's style: the open-data breakdowns of the weekly exports
(aggregator.exports, fr-en-dnma-par-uai-*) so that BI tools read the ministry's figures through the
same API. One definition: each method runs its export's own query (exports.query), narrowed to the
sites asked for, a perimeter token's establishments and the segment, bucketed by the API's period.

A row per UAI and period: `label` the UAI, the export's shared columns (académie, commune, ...), then
per breakdown X `visites_X`, `utilisateurs_X` (exact: rollups.USER_KEY, as the export) and `duree_X`
in seconds (the export writes it as [h]h:mm:ss)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aggregator import exports
from aggregator.reporting_actions import ReportFilter
from aggregator.reporting_person import matching
from aggregator.rollups import inline_dates
from dnma.datatable import Table

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


Handler = Callable[..., Any]


def _method(dataset_name: str) -> Handler:
    def handler(client: Any, f: ReportFilter, params: Mapping[str, str], slots: Mapping[int, str] | None,
                establishments: tuple[str, str] | None = None) -> Any:
        return breakdown(client, f, dataset_name, establishments)
    return handler


METHODS: dict[str, Handler] = {method: _method(name) for method, name in DATASETS.items()}
