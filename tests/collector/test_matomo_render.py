"""Matomo's output formats (collector/matomo_render.py) against the shapes Matomo 5 writes: the
expected values are facts read from Matomo's renderers and its system tests' expected files
(tests/PHPUnit/System/expected/, named in each test), written here by hand."""

from __future__ import annotations

from typing import Any

from collector.matomo_render import format_error, render, render_error
from dnma.datatable import Map, Scalar, Simple, Table, to_json

# One period of VisitsSummary.get as test_TwoVisitors_twoWebsites_differentDays__VisitsSummary.get_day.xml
# has it (site 1, 2010-01-03), the columns DNMA serves.
SUMMARY = Simple({"nb_uniq_visitors": 2, "nb_users": 0, "nb_visits": 2, "nb_actions": 2, "bounce_count": 2,
                  "sum_visit_length": 0, "max_actions": 1, "bounce_rate": "100%", "nb_actions_per_visit": 1,
                  "avg_time_on_site": 0})


def text(value: Any, **params: str) -> str:
    body = render(value, params).body
    return body[2:].decode("utf-16-le") if body[:2] == b"\xff\xfe" else body.decode()


def test_xml_is_the_default_and_keys_sites_then_periods_as_matomo() -> None:
    answer = Map("idSite", {"1": Map("date", {"2010-01-03": SUMMARY, "2010-01-04": Simple()}),
                            "2": Map("date", {"2010-01-03": Simple(), "2010-01-04": SUMMARY})})
    rendered = render(answer, {})
    assert rendered.media_type == "text/xml; charset=utf-8"
    summary = "".join(f"\t\t\t<{k}>{v}</{k}>\n" for k, v in SUMMARY.items())
    assert rendered.body.decode() == (
        '<?xml version="1.0" encoding="utf-8" ?>\n<results>\n'
        '\t<result idSite="1">\n'
        f'\t\t<result date="2010-01-03">\n{summary}\t\t</result>\n'
        '\t\t<result date="2010-01-04" />\n'
        '\t</result>\n'
        '\t<result idSite="2">\n'
        '\t\t<result date="2010-01-03" />\n'
        f'\t\t<result date="2010-01-04">\n{summary}\t\t</result>\n'
        '\t</result>\n'
        '</results>')
    assert text(answer, format="JSON") == (
        '{"1":{"2010-01-03":{"nb_uniq_visitors":2,"nb_users":0,"nb_visits":2,"nb_actions":2,"bounce_count":2,'
        '"sum_visit_length":0,"max_actions":1,"bounce_rate":"100%","nb_actions_per_visit":1,"avg_time_on_site":0},'
        '"2010-01-04":[]},"2":{"2010-01-03":[],"2010-01-04":{"nb_uniq_visitors":2,"nb_users":0,"nb_visits":2,'
        '"nb_actions":2,"bounce_count":2,"sum_visit_length":0,"max_actions":1,"bounce_rate":"100%",'
        '"nb_actions_per_visit":1,"avg_time_on_site":0}}}')


def test_rows_keyed_by_period_in_xml() -> None:
    # test_TwoVisitors_twoWebsites_differentDays__Actions.getPageUrls_day.xml: rows three tabs in.
    rows = Table([{"label": "/index.htm", "nb_visits": 1, "min_bandwidth": None, "url": "http://example.org/index.htm"}],
                 metadata=["url"])
    assert text(Map("idSite", {"1": Map("date", {"2010-01-03": rows, "2010-01-04": Table()})})) == (
        '<?xml version="1.0" encoding="utf-8" ?>\n<results>\n\t<result idSite="1">\n'
        '\t\t<result date="2010-01-03">\n\t\t\t<row>\n\t\t\t\t<label>/index.htm</label>\n'
        '\t\t\t\t<nb_visits>1</nb_visits>\n\t\t\t\t<min_bandwidth />\n'
        '\t\t\t\t<url>http://example.org/index.htm</url>\n\t\t\t</row>\n\t\t</result>\n'
        '\t\t<result date="2010-01-04" />\n\t</result>\n</results>')
    assert text(rows) == ('<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<row>\n\t\t<label>/index.htm</label>\n'
                          '\t\t<nb_visits>1</nb_visits>\n\t\t<min_bandwidth />\n'
                          '\t\t<url>http://example.org/index.htm</url>\n\t</row>\n</result>')
    assert text(Table()) == '<?xml version="1.0" encoding="utf-8" ?>\n<result />'
    assert text(Table(), format="json") == "[]" and text(Simple(), format="json") == "[]"


def test_csv_is_utf16le_with_a_bom_unless_told_otherwise() -> None:
    # test_AllWebsitesTest_superuser__VisitsSummary.get_.csv: FF FE, then one row per site.
    answer = Map("idSite", {"1": SUMMARY, "2": Simple({**SUMMARY, "nb_visits": 1})})
    rendered = render(answer, {"format": "csv"})
    assert rendered.body[:2] == b"\xff\xfe" and rendered.media_type == "application/vnd.ms-excel"
    assert rendered.body[2:].decode("utf-16-le") == (
        "idSite,nb_uniq_visitors,nb_users,nb_visits,nb_actions,bounce_count,sum_visit_length,max_actions,"
        "bounce_rate,nb_actions_per_visit,avg_time_on_site\n"
        "1,2,0,2,2,2,0,1,100%,1,0\n2,2,0,1,2,2,0,1,100%,1,0")
    # test_csvExport_multi__VisitsSummary.get_week.csv: a week's label holds a comma, so it is quoted.
    weekly = text(Map("date", {"2009-12-28,2010-01-03": SUMMARY}), format="csv", convertToUnicode="0")
    assert weekly.split("\n")[1].startswith('"2009-12-28,2010-01-03",2,0,2,')
    assert render(Table(), {"format": "csv"}).body == b"No data available"


def test_csv_and_tsv_cells() -> None:
    rows = Table([{"label": "=HYPERLINK(1)", "nb_visits": 3, "url": "http://x/a;b"},
                  {"label": 'say "hi"\tnow', "nb_visits": 1.5, "url": "-5"},
                  {"label": "50%", "nb_visits": True, "url": None}], metadata=["url"])
    assert text(rows, format="csv", convertToUnicode="0") == (
        "label,nb_visits,metadata_url\n'=HYPERLINK(1),3,\"http://x/a;b\"\n"
        '"say ""hi"" now",1.5,-5\n50%,1,')
    assert text(rows, format="tsv", convertToUnicode="0").split("\n")[0] == "label\tnb_visits\tmetadata_url"
    # Multi-site x multi-period: both keys lead, and every row keeps its columns in place.
    nested = Map("idSite", {"1": Map("date", {"d1": Simple({"a": 1, "b": 2})}),
                            "2": Map("date", {"d1": Simple(), "d2": Simple({"a": 3, "b": 4})})})
    assert text(nested, format="csv", convertToUnicode="0") == "idSite,date,a,b\n1,d1,1,2\n2,d2,3,4"


def test_single_values_and_php_arrays() -> None:
    assert text(Scalar("5.0.0")) == '<?xml version="1.0" encoding="utf-8" ?>\n<result>5.0.0</result>'
    assert text(Scalar("5.0.0"), format="json") == '{"value":"5.0.0"}'
    assert text(Scalar("5.0.0"), format="csv", convertToUnicode="0") == "value\n5.0.0"
    # One column left (showColumns=nb_visits): Matomo gives the bare value.
    assert text(Simple({"nb_visits": 5}), format="json") == '{"value":5}'
    assert text(Map("date", {"d1": Simple({"nb_visits": 5}), "d2": Simple({"nb_visits": 0})})) == (
        '<?xml version="1.0" encoding="utf-8" ?>\n<results>\n\t<result date="d1">5</result>\n'
        '\t<result date="d2" />\n</results>')
    # SitesManager's arrays: a list of ids, one site (a row), sites keyed by id.
    assert text(["1", "2"]) == '<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<row>1</row>\n\t<row>2</row>\n</result>'
    assert text(["1", "2"], format="json") == '["1","2"]'
    assert text(["1", "2"], format="csv", convertToUnicode="0") == "1\n2"
    site = {"idsite": "1", "name": 'A&B "x" é/', "group": ""}
    assert text(site) == ('<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<row>\n\t\t<idsite>1</idsite>\n'
                          '\t\t<name>A&amp;B &quot;x&quot; é/</name>\n\t\t<group />\n\t</row>\n</result>')
    assert text(site, format="json") == '{"idsite":"1","name":"A&B \\"x\\" \\u00e9\\/","group":""}'
    assert text({"1": site}).split("\n")[2] == '\t<row key="1">'
    assert text([], format="json") == "[]" and text([]) == '<?xml version="1.0" encoding="utf-8" ?>\n<result />'


def test_errors_in_each_format_and_refused_formats() -> None:
    message = 'Bad "value" <here>'
    escaped = "Bad &quot;value&quot; &lt;here&gt;"  # Matomo escapes the message for every format
    assert render_error(message, {}).body.decode() == (
        f'<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<error message="{escaped}" />\n</result>')
    assert render_error(message, {"format": "json"}).body.decode() == f'{{"result":"error","message":"{escaped}"}}'
    assert render_error(message, {"format": "csv"}).body.decode() == f"Error: {escaped}"
    assert render_error("no", {"format": "original", "serialize": "1"}).body == (
        b'a:2:{s:6:"result";s:5:"error";s:7:"message";s:2:"no";}')
    assert format_error({"format": "original"}) is None and format_error({"format": "TSV"}) is None
    assert "serialized PHP" in (format_error({"format": "original", "serialize": "1"}) or "")
    assert format_error({"format": "html"}) == (
        "Renderer format 'html' not valid. Try any of the following instead: csv, json, original, tsv, xml.")
    assert render_error("x", {"format": "html"}).body == b"Error: x"
    jsonp = render(Scalar(1), {"format": "json", "callback": "cb.x_1"})
    assert jsonp.body == b'cb.x_1({"value":1})' and jsonp.media_type.startswith("application/javascript")
    assert render(Scalar(1), {"format": "json", "callback": "alert(1)"}).body == b'{"value":1}'


def test_bulk_items_are_plain_json() -> None:
    assert to_json(Map("date", {"d": Table([{"label": "a"}]), "e": Simple()})) == {"d": [{"label": "a"}], "e": []}
    assert to_json(Scalar("5.0.0")) == {"value": "5.0.0"}
