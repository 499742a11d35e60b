"""Matomo's output formats for `module=API` answers: xml (Matomo's default), json (JSONP too),
csv and tsv (UTF-16LE with a byte-order mark unless `convertToUnicode=0`), and `original` as JSON,
with the exact shapes of Matomo 5's renderers (core/DataTable/Renderer/*.php, plugins/API/Renderer)
for one value, one row (`Simple`), rows (`Table`), answers keyed by site or period (`Map`), plain
arrays (the sites methods) and errors. What an answer is made of: dnma/datatable.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dnma.datatable import Map, Scalar, Simple, Table, flat, to_json

FORMATS = ("xml", "json", "csv", "tsv", "original")  # what DNMA renders; Matomo also has html, rss, console
_XML_HEAD = '<?xml version="1.0" encoding="utf-8" ?>\n'
_JSONP_CALLBACK = re.compile(r"[0-9a-zA-Z_.]+")
# PHP's is_numeric (PHP 8: leading and trailing whitespace allowed).
_PHP_NUMERIC = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")
# Characters XML 1.0 forbids; PHP would write them and break the client's parser.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_TAG = re.compile(r"[^!\"#$%&'()*+,/;<=>?@\[\\\]^`{|}~\-.0-9][^!\"#$%&'()*+,/;<=>?@\[\\\]^`{|}~]*")


@dataclass(frozen=True)
class Rendered:
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def output_format(params: Mapping[str, str]) -> str:
    """The `format` asked for, as Matomo reads it: lower-cased, xml when absent."""
    return (params.get("format") or "xml").lower()


def format_error(params: Mapping[str, str]) -> str | None:
    """Matomo's message for a format it (or DNMA) does not render, else None."""
    fmt = output_format(params)
    if fmt not in FORMATS:
        return f"Renderer format '{fmt}' not valid. Try any of the following instead: {', '.join(sorted(FORMATS))}."
    if fmt == "original" and _int_param(params, "serialize", 0):
        return "format=original&serialize=1 (serialized PHP) is not served by DNMA: use format=json"
    return None


def render(value: Any, params: Mapping[str, str]) -> Rendered:
    """`value` (a handler's answer) in the format of `params` (call format_error first)."""
    fmt = output_format(params)
    if fmt == "xml":
        return Rendered((_XML_HEAD + _xml_document(value)).encode(), "text/xml; charset=utf-8")
    if fmt in ("csv", "tsv"):
        return _csv(value, params, "\t" if fmt == "tsv" else ",")
    return _jsonp(php_json(to_json(value)), params)


def render_error(message: str, params: Mapping[str, str]) -> Rendered:
    """Matomo's error answer in the format asked for (ResponseBuilder::getResponseException: the
    message is XML-escaped first, whatever the format)."""
    text = xml_value(message)
    fmt = output_format(params)
    if fmt not in FORMATS:  # Matomo falls back to its console renderer
        return Rendered(f"Error: {text}".encode(), "text/plain; charset=utf-8")
    if fmt == "xml":
        body = f'{_XML_HEAD}<result>\n\t<error message="{text}" />\n</result>'
        return Rendered(body.encode(), "text/xml; charset=utf-8")
    if fmt in ("csv", "tsv"):
        return Rendered(f"Error: {text}".encode(), "text/html; charset=utf-8")
    if fmt == "original" and _int_param(params, "serialize", 0):
        return Rendered(_php_serialize({"result": "error", "message": text}).encode(), "text/plain; charset=utf-8")
    doc = {"result": "error", "message": text.replace("\r\n", " ").replace("\n", " ")}
    return _jsonp(php_json(doc), params)


# --- values


def php_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and _PHP_NUMERIC.fullmatch(value) is not None


def php_str(value: Any) -> str:
    """A value as PHP writes it into a string: true "1", false and null "", 3.0 "3"."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".14G")
    return str(value)


def xml_value(value: Any) -> str:
    """Renderer::formatValueXml: text escaped as htmlspecialchars(ENT_COMPAT) does; false is 0."""
    if value is False:
        return "0"
    if isinstance(value, str) and not php_numeric(value):
        value = _XML_FORBIDDEN.sub("\ufffd", value)
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return php_str(value)


def php_json(doc: Any) -> bytes:
    """json_encode's bytes: non-ASCII as \\uXXXX, "/" as "\\/", an empty array `[]`."""
    text = json.dumps(_empty_dicts_as_lists(doc), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("/", "\\/").encode()  # "/" occurs only inside JSON strings


def _empty_dicts_as_lists(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _empty_dicts_as_lists(v) for k, v in doc.items()} if doc else []
    if isinstance(doc, list):
        return [_empty_dicts_as_lists(v) for v in doc]
    return doc


def _php_empty(value: Any) -> bool:
    return value is None or value is False or value in ("", "0", 0) or (isinstance(value, list | dict) and not value)


def _php_serialize(doc: dict[str, str]) -> str:
    items = "".join(f's:{len(k.encode())}:"{k}";s:{len(v.encode())}:"{v}";' for k, v in doc.items())
    return f"a:{len(doc)}:{{{items}}}"


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = (params.get(name) or "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


def _jsonp(body: bytes, params: Mapping[str, str]) -> Rendered:
    callback = params.get("callback") or params.get("jsoncallback") or ""
    if callback and _JSONP_CALLBACK.fullmatch(callback):
        return Rendered(callback.encode() + b"(" + body + b")", "application/javascript; charset=utf-8")
    return Rendered(body, "application/json; charset=utf-8")


# --- XML (core/DataTable/Renderer/Xml.php)


def _xml_document(value: Any) -> str:
    if isinstance(value, Map):
        return "<results>\n" + _xml_map(value, "") + "</results>"
    if isinstance(value, Table):
        return f"<result>\n{_xml_rows(value, '')}</result>" if value else "<result />"
    if isinstance(value, Simple | Scalar) or not isinstance(value, list | dict):
        data = flat(value)
        if isinstance(data, dict):
            return f"<result>\n{_xml_simple(data, '')}</result>" if data else "<result />"
        if isinstance(data, list):
            return "<result />"  # an empty Simple
        text = xml_value(data)
        return f"<result>{text}</result>" if text else "<result />"
    data = flat(value)  # a PHP array: the sites methods, getBulkRequest
    if not data:
        return "<result />"
    if isinstance(data, dict) and not any(isinstance(v, list | dict) for v in data.values()):
        data = [data]  # Renderer::convertDataTableToArray wraps a flat array as one row
    return f"<result>\n{_xml_array(data, chr(9))}</result>"


def _tags(name: str, invalid: bool) -> tuple[str, str]:
    return (f'col name="{xml_value(name)}"', "col") if invalid else (name, name)


def _invalid_names(row: Mapping[str, Any]) -> bool:
    return any(not _XML_TAG.fullmatch(str(k)) for k in row)


def _xml_simple(row: Mapping[str, Any], prefix: str) -> str:
    invalid = _invalid_names(row)
    out = ""
    for name, value in row.items():
        start, end = _tags(str(name), invalid)
        if isinstance(value, list | dict):
            inner = (_xml_rows(value, prefix + "\t") if isinstance(value, list) and value and isinstance(value[0], dict)
                     else _xml_simple(value if isinstance(value, dict) else {str(i): v for i, v in enumerate(value)},
                                   prefix + "\t"))
            out += f"{prefix}\t<{start}>\n{inner}{prefix}\t</{end}>\n"
        elif value is None:
            out += f"{prefix}\t<{start}></{end}>\n"
        else:
            text = xml_value(value)
            out += f"{prefix}\t<{start} />\n" if text == "" else f"{prefix}\t<{start}>{text}</{end}>\n"
    return out


def _xml_rows(rows: list[Any], prefix: str) -> str:
    invalid = _invalid_names(rows[0]) if rows and isinstance(rows[0], dict) else False
    out = ""
    for row in rows:
        if not isinstance(row, dict):
            out += f"{prefix}\t<row>{prefix}{xml_value(row)}</row>\n"
            continue
        out += f"{prefix}\t<row>\n"
        for name, value in row.items():
            if isinstance(value, list | dict):
                first = next(iter(value.values() if isinstance(value, dict) else value), None)
                if isinstance(first, list | dict):
                    text = "\n" + _xml_rows(list(value.values()) if isinstance(value, dict) else value, prefix + "\t\t")
                else:
                    text = "\n" + _xml_array(value, prefix + "\t\t")
                text += prefix + "\t\t"
            else:
                text = xml_value(value)
            start, end = _tags(str(name), invalid)
            out += f"{prefix}\t\t<{start} />\n" if text == "" else f"{prefix}\t\t<{start}>{text}</{end}>\n"
        out += f"\t{prefix}</row>\n"
    return out


def _xml_array(data: Any, prefix: str) -> str:
    assoc = isinstance(data, dict)
    items = list(data.items()) if assoc else list(enumerate(data))
    wrap = prefix == "\t" and assoc and bool(items) and not any(isinstance(v, list | dict) for _, v in items) \
        and not (len(items) == 1)
    out = ""
    if wrap:
        out += f"{prefix}<row>\n"
        prefix += "\t"
    for key, value in items:
        key = str(key)
        if not assoc:
            start, end, empty = "<row>", "</row>", "<row/>"
        elif "=" in key:
            attribute, _, val = key.partition("=")
            start, end, empty = f'<row {attribute}="{val}">', "</row>", f'<row {attribute}="{val}"/>'
        elif not _XML_TAG.fullmatch(key):
            start, end, empty = f'<row key="{xml_value(key)}">', "</row>", f'<row key="{xml_value(key)}"/>'
        else:
            start, end, empty = f"<{key}>", f"</{key}>", f"<{key} />"
        if isinstance(value, list | dict):
            out += f"{prefix}{start}\n{_xml_array(value, prefix + chr(9))}{prefix}{end}\n"
        else:
            text = xml_value(value)
            out += f"{prefix}{start}{text}{end}\n" if text != "" else f"{prefix}{empty}\n"
    if wrap:
        out += prefix[:-1] + "</row>\n"
    return out


def _xml_map(table: Map, prefix: str) -> str:
    key = table.key
    entries = list(table.items())
    if not entries:
        return ""
    first = flat(entries[0][1])
    out = ""
    if not isinstance(first, list | dict):  # CASE 1: one value per key (a single-metric getter)
        for label, inner in entries:
            data = flat(inner)
            if _php_empty(data):
                out += f'{prefix}\t<result {key}="{label}" />\n'
            elif isinstance(data, dict):
                out += f'\t<result {key}="{label}">\n{_xml_simple(data, "")}</result>\n'
            elif isinstance(data, list):
                out += f'\t<result {key}="{label}">\n{_xml_rows(data, "")}</result>\n'
            else:
                out += f'{prefix}\t<result {key}="{label}">{xml_value(data)}</result>\n'
        return out
    kind = entries[0][1]
    if isinstance(kind, Map):
        for label, inner in entries:
            out += f'{prefix}\t<result {key}="{label}">\n{_xml_map(inner, prefix + chr(9))}{prefix}\t</result>\n'
        return out
    if isinstance(kind, Simple) or (isinstance(kind, dict) and not isinstance(kind, Map)):  # CASE 2
        for label, inner in entries:
            data = flat(inner)
            if _php_empty(data) and isinstance(data, list | dict):
                out += f'{prefix}\t<result {key}="{label}" />\n'
            elif isinstance(data, dict):
                body = "\n" + _xml_simple(data, prefix + "\t") + prefix + "\t"
                out += f'{prefix}\t<result {key}="{label}">{body}</result>\n'
            else:
                out += f'{prefix}\t<result {key}="{label}">{xml_value(data)}</result>\n'
        return out
    for label, inner in entries:  # CASE 3: rows per key
        rows = _xml_rows(list(inner), prefix + "\t") if inner else ""
        if not rows:
            out += f'{prefix}\t<result {key}="{label}" />\n'
        else:
            out += f'{prefix}\t<result {key}="{label}">\n{rows}{prefix}\t</result>\n'
    return out


# --- CSV and TSV (core/DataTable/Renderer/Csv.php)

NO_DATA = "No data available"


def _csv(value: Any, params: Mapping[str, str], separator: str) -> Rendered:
    text = _CsvWriter(separator).table(value, {})
    headers = {"Content-Disposition": "attachment; filename*=UTF-8''Export.csv"}
    if not text:
        return Rendered(NO_DATA.encode(), "application/vnd.ms-excel", headers)
    if _int_param(params, "convertToUnicode", 1):
        body = b"\xff\xfe" + text.encode("utf-16-le", errors="surrogatepass")
    else:
        body = text.encode("utf-8", errors="surrogatepass")
    return Rendered(body, "application/vnd.ms-excel", headers)


class _CsvWriter:
    def __init__(self, separator: str) -> None:
        self.sep = separator
        # The key columns of the Maps met so far: Matomo writes an empty cell for them in the rows of
        # a site after the first (multi-site x multi-period), shifting every value; DNMA does not.
        self.keys: set[Any] = set()

    def value(self, value: Any) -> str:
        """Csv::formatValue: formulas neutralised, quoted when holding a quote or a separator."""
        if value is False:
            value = 0
        if isinstance(value, str):
            value = _no_formula(value).replace("\t", " ")
            if any(c in value for c in ('"', self.sep, ",", ";")):
                value = '"' + value.replace('"', '""') + '"'
        return php_str(value)

    def header(self, names: list[Any]) -> str:
        return self.sep.join(self.value(n) for n in names)

    def table(self, value: Any, columns: dict[Any, bool]) -> str:
        if isinstance(value, Map):
            return self._map(value, columns)
        if isinstance(value, Scalar) or not isinstance(value, list | dict):
            columns["value"] = True
            return "value\n" + self.value(flat(value))
        if isinstance(value, Simple):
            if len(value) == 1:
                columns["value"] = True
                return "value\n" + self.value(next(iter(value.values())))
            return self._rows([dict(value)] if value else [], columns, frozenset())
        if isinstance(value, Table):
            return self._rows(list(value), columns, value.metadata)
        return self._rows(_simple_array_rows(value), columns, frozenset())

    def _map(self, table: Map, columns: dict[Any, bool]) -> str:
        out = ""
        for label, inner in table.items():
            lines = self.table(inner, columns).split("\n")[1:]
            if lines:
                out += "\n" + "\n".join(self.value(label) + self.sep + line for line in lines)
        self.keys.add(table.key)
        merged = {table.key: True, **columns}
        columns.clear()
        columns.update(merged)
        return self.header(list(columns)) + out

    def _rows(self, rows: list[dict[Any, Any]], columns: dict[Any, bool], metadata: frozenset[str]) -> str:
        lines = []
        for row in rows:
            flat_row: dict[Any, Any] = {}
            for name, v in row.items():
                if name in metadata:
                    if not isinstance(v, list | dict):
                        flat_row[f"metadata_{name}"] = v
                else:
                    _flatten_column(name, v, flat_row)
            for name in flat_row:
                columns[name] = True
            lines.append(flat_row)
        out = ""
        if not (len(columns) == 1 and not isinstance(next(iter(columns)), str)):
            out += self.header(list(columns)) + "\n"
        cells = [c for c in columns if c not in self.keys]
        for row in lines:
            out += self.sep.join(self.value(row.get(c, "")) for c in cells) + "\n"
        return out[:-1]


def _flatten_column(name: Any, value: Any, into: dict[Any, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten_column(f"{name}_{k}", v, into)
    elif isinstance(value, list):
        for k, v in enumerate(value):
            _flatten_column(f"{name}_{k}", v, into)
    else:
        into[name] = value


def _simple_array_rows(data: Any) -> list[dict[Any, Any]]:
    """DataTable::addRowsFromSimpleArray: scalars one row each, a flat dict one row, else one row per item."""
    data = flat(data)
    if not data:
        return []
    values = list(data.values()) if isinstance(data, dict) else list(data)
    if not any(isinstance(v, list | dict) for v in values):
        return [{0: v} for v in values] if isinstance(data, list) else [dict(data)]
    return [v if isinstance(v, dict) else {0: v} for v in values]


def _no_formula(value: str) -> str:
    """Csv::formatFormulas: a cell a spreadsheet would run (=, +, -, @) gets a leading quote."""
    bare = value.lstrip("\0")
    while bare.startswith("%00"):
        bare = bare[3:].lstrip("\0")
    bare = bare.replace("%", "", 1)
    if not bare or bare == "0" or php_numeric(bare):
        return value
    return "'" + value if bare[0] in "=+-@" else value
