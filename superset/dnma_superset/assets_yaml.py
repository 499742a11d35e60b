"""The bundle as Superset's export YAML, one file per database, dataset, chart and dashboard, keys
sorted, nothing volatile: rendered in memory, written to superset/assets/ or compared with it.

Run `python superset/build_assets.py` (or `make superset-assets`) and commit the YAML with it:
the YAML is what reviewers read and what `dnma superset provision` imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dnma_superset.charts import Chart, Markdown, query_context
from dnma_superset.dashboards import DASHBOARDS, Dashboard
from dnma_superset.dataset_sql import DB, SQL
from dnma_superset.datasets import DATASETS, Dataset
from dnma_superset.identity import DATABASE_NAME, DATABASE_UUID

ASSETS = Path(__file__).resolve().parent.parent / "assets"
VERSION = "1.0.0"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=110, default_flow_style=False)


def database_yaml(uri: str = "clickhousedb://dnma_reader:XXXXXXXXXX@127.0.0.1:8123/dnma") -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME, "sqlalchemy_uri": uri, "uuid": DATABASE_UUID, "version": VERSION,
        "allow_ctas": False, "allow_cvas": False, "allow_dml": False, "allow_file_upload": False,
        "allow_run_async": False, "cache_timeout": None, "expose_in_sqllab": True,
        "extra": {"allows_virtual_table_explore": True, "metadata_params": {}, "engine_params": {},
                  "schemas_allowed_for_file_upload": []},
    }


def dataset_yaml(d: Dataset) -> dict[str, Any]:
    return {
        "table_name": d.name, "schema": DB, "catalog": None, "sql": SQL[d.name], "uuid": d.uuid,
        "database_uuid": DATABASE_UUID, "version": VERSION, "description": d.label,
        "main_dttm_col": d.main_dttm, "default_endpoint": None, "offset": 0, "cache_timeout": None,
        "filter_select_enabled": True, "fetch_values_predicate": None, "normalize_columns": False,
        "always_filter_main_dttm": False, "extra": {"dnma_perimeter": d.perimeter},
        "template_params": None,
        "columns": [
            {"column_name": name, "verbose_name": label, "type": ch_type, "is_dttm": is_dttm, "is_active": True,
             "groupby": True, "filterable": True, "expression": None, "description": None,
             "python_date_format": None, "advanced_data_type": None, "extra": None}
            for name, label, ch_type, is_dttm in d.columns
        ],
        "metrics": [
            {"metric_name": name, "verbose_name": label, "metric_type": None, "expression": sql,
             "description": None, "d3format": fmt or None, "warning_text": None, "extra": None, "currency": None}
            for name, label, sql, fmt in d.metrics
        ],
    }


def chart_yaml(c: Chart) -> dict[str, Any]:
    params = {**c.params, "viz_type": c.viz}
    return {
        "slice_name": c.title, "viz_type": c.viz, "uuid": c.uuid, "dataset_uuid": DATASETS[c.dataset].uuid,
        "version": VERSION, "params": params, "query_context": json.dumps(query_context(c), sort_keys=True,
                                                                          ensure_ascii=False),
        "cache_timeout": None, "description": None, "certified_by": None, "certification_details": None,
    }


def dashboard_yaml(d: Dashboard, chart_ids: dict[str, int]) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": d.title}},
    }
    for i, row in enumerate(d.rows):
        row_id = f"ROW-{d.slug}-{i}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for c in row:
            if isinstance(c, Markdown):
                mid = f"MARKDOWN-{c.key}"
                position[row_id]["children"].append(mid)
                position[mid] = {"type": "MARKDOWN", "id": mid, "children": [],
                                 "parents": ["ROOT_ID", "GRID_ID", row_id],
                                 "meta": {"width": c.width, "height": c.height, "code": c.code}}
                continue
            cid = f"CHART-{c.key}"
            position[row_id]["children"].append(cid)
            position[cid] = {"type": "CHART", "id": cid, "children": [], "parents": ["ROOT_ID", "GRID_ID", row_id],
                             "meta": {"width": c.width, "height": c.height, "chartId": chart_ids[c.key],
                                      "uuid": c.uuid, "sliceName": c.title}}
    return {
        "dashboard_title": d.title, "slug": d.slug, "uuid": d.uuid, "version": VERSION, "published": True,
        "description": d.description or None, "css": "", "certified_by": None, "certification_details": None,
        "position": position,
        "metadata": {
            "native_filter_configuration": [f.config(d.slug) for f in d.filters],
            **({"color_scheme": d.color_scheme} if d.color_scheme else {}),
            "refresh_frequency": 0, "cross_filters_enabled": False,
            "timed_refresh_immune_slices": [], "expanded_slices": {}, "default_filters": "{}",
            "chart_configuration": {}, "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"],
                                                                                 "excluded": []}},
            "shared_label_colors": [], "label_colors": {}, "color_scheme_domain": [],
        },
    }


def _file(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


DATABASE_FILE = f"databases/{_file(DATABASE_NAME)}.yaml"


def render() -> dict[str, str]:
    """Relative path -> YAML text of the whole bundle (without metadata.yaml: added at import)."""
    files = {DATABASE_FILE: dump(database_yaml())}
    for d in DATASETS.values():
        files[f"datasets/{_file(DATABASE_NAME)}/{d.name}.yaml"] = dump(dataset_yaml(d))
    chart_ids: dict[str, int] = {}
    for dash in DASHBOARDS:
        for c in dash.charts():
            if c.key in chart_ids:
                raise ValueError(f"chart key {c.key} used twice")
            chart_ids[c.key] = len(chart_ids) + 1
            files[f"charts/{c.key}.yaml"] = dump(chart_yaml(c))
        files[f"dashboards/{dash.slug}.yaml"] = dump(dashboard_yaml(dash, chart_ids))
    return files


def write(target: Path = ASSETS) -> list[str]:
    files = render()
    for old in target.rglob("*.yaml") if target.exists() else []:
        if str(old.relative_to(target)) not in files:
            old.unlink()
    changed = []
    for rel, text in sorted(files.items()):
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    return changed


def differences(target: Path = ASSETS) -> list[tuple[str, str]]:
    """(relative path, how) of every file `write(target)` would change, sorted: "differs", "missing",
    or "not generated" (a YAML file the bundle no longer has, which `write` deletes)."""
    files = render()
    out = []
    for rel, text in sorted(files.items()):
        path = target / rel
        try:
            if path.read_text(encoding="utf-8") != text:
                out.append((rel, "differs"))
        except FileNotFoundError:
            out.append((rel, "missing"))
        except (OSError, UnicodeDecodeError):
            out.append((rel, "differs"))
    extra = [str(p.relative_to(target)) for p in target.rglob("*.yaml")] if target.exists() else []
    out += [(rel, "not generated") for rel in sorted(extra) if rel not in files]
    return out
