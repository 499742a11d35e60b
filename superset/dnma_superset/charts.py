"""The bundle's charts: one builder per kind (KPI, trend, bars, pie, tables, map) filling Superset's
viz params, and the query context each chart's viz plugin would save.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from dnma.indicators import CENSUS_SCHEME
from dnma_superset.identity import NS, uid

# A chart's column: a dataset column's name, or an ad hoc SQL column (dnma_superset.labels.labelled).
Column = str | dict[str, Any]

# Every chart reads all the rows its query returns: a chart never drops data silently (the largest
# query, services × profils, is a few hundred rows; tables page through theirs in the browser).
ROW_LIMIT = 10000


@dataclass
class Chart:
    key: str  # stable identity (uuid source), unique in the bundle
    title: str
    viz: str
    dataset: str
    params: dict[str, Any]
    width: int = 4
    height: int = 50

    @property
    def uuid(self) -> str:
        return uid("chart", self.key)


def kpi(key: str, title: str, dataset: str, metric: str, fmt: str = "SMART_NUMBER",
        filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "big_number_total", dataset, {
        "metric": metric, "adhoc_filters": filters or [], "header_font_size": 0.4, "subheader_font_size": 0.15,
        "y_axis_format": fmt, "subheader": "",
    }, width=3, height=25)


def kpi_text(key: str, title: str, dataset: str, metric: str, filters: list[dict[str, Any]] | None = None) -> Chart:
    """A headline figure Superset's big number cannot write (it formats numbers only): a one-cell
    table of a text metric, e.g. a duration in French (dnma_superset.labels.duration_sql); no
    groupby, so its query returns one row (the usual ROW_LIMIT kept: no chart cuts its rows)."""
    return Chart(key, title, "table", dataset, {
        "query_mode": "aggregate", "groupby": [], "metrics": [metric], "all_columns": [], "percent_metrics": [],
        "adhoc_filters": filters or [], "row_limit": ROW_LIMIT, "order_desc": True, "timeseries_limit_metric": metric,
        "server_pagination": False,
        "include_search": False, "show_cell_bars": False, "table_timestamp_format": "smart_date",
    }, width=3, height=25)


def trend(key: str, title: str, dataset: str, metrics: list[str], x: str = "debutsemaine", grain: str = "P1W",
          width: int = 12, fmt: str = "SMART_NUMBER") -> Chart:
    return Chart(key, title, "echarts_timeseries_line", dataset, {
        "x_axis": x, "time_grain_sqla": grain, "metrics": metrics, "groupby": [], "adhoc_filters": [],
        "row_limit": ROW_LIMIT, "truncate_metric": True, "show_legend": True, "rich_tooltip": True,
        "x_axis_time_format": "smart_date", "y_axis_format": fmt, "markerEnabled": True,
        "order_desc": True, "comparison_type": "values", "annotation_layers": [],
    }, width=width)


def bars(key: str, title: str, dataset: str, x: Column, metrics: list[str], groupby: list[Column] | None = None,
         width: int = 4) -> Chart:
    return Chart(key, title, "echarts_timeseries_bar", dataset, {
        "x_axis": x, "metrics": metrics, "groupby": groupby or [], "adhoc_filters": [], "row_limit": ROW_LIMIT,
        "orientation": "horizontal", "x_axis_sort": metrics[0], "x_axis_sort_asc": True,
        "x_axis_sort_series": "sum", "x_axis_sort_series_ascending": False,
        "show_legend": bool(groupby), "stack": "Stack" if groupby else None, "y_axis_format": "SMART_NUMBER",
        "truncate_metric": True, "order_desc": True, "annotation_layers": [], "rich_tooltip": True,
        "show_value": not groupby,
    }, width=width)


def pie(key: str, title: str, dataset: str, groupby: Column, metric: str = "visites", width: int = 4) -> Chart:
    return Chart(key, title, "pie", dataset, {
        "groupby": [groupby], "metric": metric, "adhoc_filters": [], "row_limit": ROW_LIMIT, "sort_by_metric": True,
        "show_labels": True, "label_type": "key_percent", "number_format": "SMART_NUMBER", "show_legend": True,
        "legendOrientation": "top", "innerRadius": 30, "donut": True, "outerRadius": 70, "labels_outside": True,
    }, width=width)


def table(key: str, title: str, dataset: str, groupby: list[Column], metrics: list[str], width: int = 6,
          height: int = 50, order_by: str | None = None, filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "table", dataset, {
        "query_mode": "aggregate", "groupby": groupby, "metrics": metrics, "all_columns": [],
        "percent_metrics": [], "adhoc_filters": filters or [], "row_limit": ROW_LIMIT, "order_desc": True,
        "timeseries_limit_metric": order_by or metrics[0], "server_pagination": False, "include_search": True,
        "table_timestamp_format": "smart_date", "show_cell_bars": True, "color_pn": True,
    }, width=width, height=height)


def raw_table(key: str, title: str, dataset: str, columns: list[str], order: str, width: int = 12,
              filters: list[dict[str, Any]] | None = None) -> Chart:
    return Chart(key, title, "table", dataset, {
        "query_mode": "raw", "all_columns": columns, "groupby": [], "metrics": [], "percent_metrics": [],
        "order_by_cols": [json.dumps([order, False])], "adhoc_filters": filters or [], "row_limit": ROW_LIMIT,
        "server_pagination": False, "include_search": True, "table_timestamp_format": "%Y-%m-%d %H:%M",
    }, width=width)


# The maps' sequential scale (Superset's own, light to dark) and its colours, for the legend: the
# country_map plugin spreads them evenly from the smallest to the largest value of its rows.
MAP_SCHEME = "superset_seq_1"
MAP_COLORS = ("#F4FAD4", "#D7F1AC", "#A9E3AF", "#82CDBB", "#63C1BF", "#1FA8C9", "#2367AC", "#2A2D84", "#251354",
              "#050415")


def _map_entity(level: str) -> tuple[str, str]:
    return ("france", "departement_iso") if level == "departement" else ("france_regions", "region_iso")


def france_map(key: str, title: str, dataset: str, level: str, metric: str, width: int = 6) -> Chart:
    """A choropleth on MAP_SCHEME. Its dashboard must have no categorical colour scheme: country_map
    colours each territory from that scheme instead, one hue per code, when it has one (Superset
    issue #23070), and 0 % would look like 99 %."""
    country, entity = _map_entity(level)
    return Chart(key, title, "country_map", dataset, {
        "select_country": country, "entity": entity, "metric": metric, "adhoc_filters": [],
        "linear_color_scheme": MAP_SCHEME, "number_format": "SMART_NUMBER", "row_limit": ROW_LIMIT,
    }, width=width, height=80)


def census_map(key: str, title: str, level: str, niveau: str, width: int = 4) -> Chart:
    """A census class map (dataset recensement): each territory filled with the fixed palette colour
    of its class index (CENSUS_SCHEME, registered by superset_config). The bounds rows put indices 0
    and 4 in every query, so the plugin's scale maps index i to colour i exactly."""
    country = "france" if level == "departement" else "france_regions"
    return Chart(key, title, "country_map", "recensement", {
        "select_country": country, "entity": "territoire_iso", "metric": "classe_carte",
        "adhoc_filters": [where(f"niveau = '{niveau}'")], "linear_color_scheme": CENSUS_SCHEME,
        "number_format": ",d", "row_limit": ROW_LIMIT,
    }, width=width, height=70)


def census_legend(key: str, title: str, niveau: str, width: int = 4) -> Chart:
    """The legend of a census_map, from the same dataset and filter: the five classes (the bounds
    rows hold each), their colour and the number of territories in each."""
    chart = table(key, title, "recensement", ["classe", "couleur"], ["territoires"], width=width, height=50,
                  order_by="classe_carte", filters=[where(f"niveau = '{niveau}'")])
    chart.params.update({"include_search": False, "show_cell_bars": False})  # ≥ 90 % first, as the census
    return chart


@dataclass
class Markdown:
    """A dashboard's Markdown component (no query): the maps' legends."""
    key: str
    code: str
    width: int = 6
    height: int = 14


def map_legend(key: str, what: str, width: int = 6) -> Markdown:
    """The legend of a france_map: MAP_COLORS from its smallest to its largest value. Static: a
    Handlebars chart reading the map's query could print those two values, but it compiles its
    template with eval, which the CSP refuses (superset_config.TALISMAN_CONFIG); the values are on
    hover and in the table beside each map. One line of HTML: Markdown would make indented lines code."""
    gradient = ", ".join(MAP_COLORS)
    return Markdown(key, (
        '<div class="dnma-legende"><div style="display: flex; align-items: center; gap: 8px; font-size: 13px;">'
        '<span>la plus faible</span><div class="dnma-degrade" style="flex: 1; height: 14px; border: 1px solid #999; '
        f'background: linear-gradient(to right, {gradient});"></div><span>la plus forte</span></div>'
        f'<div style="font-size: 12px;">Légende de la carte « {what} » : du plus clair (la valeur la plus faible '
        'des territoires affichés) au plus foncé (la plus forte) ; survoler un territoire pour sa valeur. '
        'En blanc : aucune donnée.</div></div>'), width=width)


def where(sql: str) -> dict[str, Any]:
    return {"clause": "WHERE", "expressionType": "SQL", "sqlExpression": sql, "subject": None, "operator": None,
            "comparator": None, "filterOptionName": f"filter_{uuid.uuid5(NS, sql).hex[:12]}", "isExtra": False,
            "isNew": False}


# --- query contexts (what /api/v1/chart/<id>/data/ runs; datasource id filled in at import) ---
def _metric_list(params: dict[str, Any]) -> list[Any]:
    if "metrics" in params:
        return list(params["metrics"])
    return [params["metric"]] if "metric" in params else []


def query_context(chart: Chart) -> dict[str, Any]:
    """The query the chart's viz plugin builds, as the frontend would save it."""
    p = chart.params
    q: dict[str, Any] = {
        "filters": [], "extras": {"having": "", "where": ""}, "applied_time_extras": {}, "columns": [],
        "metrics": _metric_list(p), "orderby": [], "annotation_layers": [], "row_limit": p.get("row_limit", ROW_LIMIT),
        "series_limit": 0, "order_desc": True, "url_params": {}, "custom_params": {}, "custom_form_data": {},
    }
    wheres = [f["sqlExpression"] for f in p.get("adhoc_filters", []) if f.get("expressionType") == "SQL"]
    if wheres:
        q["extras"]["where"] = " AND ".join(f"({w})" for w in wheres)
    viz = chart.viz
    if viz in ("echarts_timeseries_line", "echarts_timeseries_bar"):
        x = p["x_axis"]
        if "time_grain_sqla" in p:
            q["columns"] = [{"timeGrain": p["time_grain_sqla"], "columnType": "BASE_AXIS", "sqlExpression": x,
                             "label": x, "expressionType": "SQL"}, *p["groupby"]]
            q["orderby"] = [[x, True]]
        else:
            q["columns"] = [x, *p["groupby"]]
            q["orderby"] = [[q["metrics"][0], False]]
        q["series_columns"] = list(p["groupby"])
    elif viz == "pie":
        q["columns"] = list(p["groupby"])
        q["orderby"] = [[p["metric"], False]]
    elif viz == "country_map":
        q["columns"] = [p["entity"]]
    elif viz == "table" and p["query_mode"] == "raw":
        q["columns"] = list(p["all_columns"])
        q["metrics"] = []
        q["orderby"] = [json.loads(o) for o in p["order_by_cols"]]
    elif viz == "table":
        q["columns"] = list(p["groupby"])
        q["orderby"] = [[p["timeseries_limit_metric"], False]]
    return {
        "datasource": {"id": 0, "type": "table"}, "force": False, "queries": [q],
        "form_data": {**p, "viz_type": viz}, "result_format": "json", "result_type": "full",
    }
