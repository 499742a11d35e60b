"""Property tests of the reporting API's pure parts: Matomo's segment grammar and its compilation to
parameterised SQL (aggregator/segments.py), and the generic filters on rows (aggregator/api_filters.py).
The same over HTTP on real visits: tests/client_sim/test_reporting.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.api_filters import FilterError, GenericFilters
from aggregator.segments import DIMENSIONS, OPERATORS, Condition, SegmentError, compile_segment, parse

_TEXT_NAMES = [n for n, d in DIMENSIONS.items() if d.kind == "text"]
values = st.text(min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["profil", "uai", "a.b", "x"]), st.sampled_from(OPERATORS), values),
                         min_size=1, max_size=3), min_size=1, max_size=3))
def test_segment_grammar_round_trip(tree: list[list[tuple[str, str, str]]]) -> None:
    """URL-encoded values come back whole, whatever they hold (`;`, `,`, `==`, `%`…)."""
    definition = ";".join(",".join(f"{n}{op}{quote(v, safe='')}" for n, op, v in ors) for ors in tree)
    assert parse(definition) == tuple(tuple(Condition(n, op, v) for n, op, v in ors) for ors in tree)


def test_segment_grammar_as_matomo_reads_it() -> None:
    assert parse("a==1;b!=2,c=@x") == ((Condition("a", "==", "1"),), (Condition("b", "!=", "2"), Condition("c", "=@", "x")))
    assert parse(r"a==x\;y\,z") == ((Condition("a", "==", "x;y,z"),),)  # escaped delimiters are literal
    assert parse("a>=3") == ((Condition("a", ">=", "3"),),)  # the longest operator, not > then =3
    assert parse("a==") == ((Condition("a", "==", ""),),)  # "is empty", as in Matomo
    for bad, says in (("a", "is not valid"), ("a=@", "has no value"), ("", "valid segment"), ("a" * 5000, "longer")):
        with pytest.raises(SegmentError, match=says):
            parse(bad)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_TEXT_NAMES), st.sampled_from(["==", "!=", "=@", "!@", "=^", "=$"]), values)
def test_segment_values_travel_as_parameters_never_in_the_sql(name: str, operator: str, value: str) -> None:
    segment, plain = compile_segment(f"{name}{operator}{quote(value, safe='')}"), compile_segment(f"{name}{operator}x")
    assert segment is not None and plain is not None
    assert segment.parameters == {"seg0": value}
    assert segment.sql == plain.sql and "{seg0:String}" in segment.sql  # the SQL never depends on the value


def test_segments_compile_to_visit_columns_or_are_refused() -> None:
    seg = compile_segment("deviceType==desktop,deviceType==Tablette;actions>=2;dimension5==ENSEIGNANT")
    assert seg is not None
    assert seg.sql == ("(lowerUTF8(`device`) = lowerUTF8({seg0:String}) OR lowerUTF8(`device`) = lowerUTF8({seg1:String}))"
                       " AND `actions` >= {seg2:Float64} AND lowerUTF8(`profil`) = lowerUTF8({seg3:String})")
    assert seg.parameters == {"seg0": "ordinateur", "seg1": "tablette", "seg2": 2.0, "seg3": "ENSEIGNANT"}
    # dimensionN follows the site's slots: slot 2 is a property kept on hits only (service).
    assert compile_segment("dimension1==x", {1: "projet"}) is not None
    assert compile_segment("") is None
    for bad, says in (("visitCount==1", "Segment 'visitCount' is not a supported segment."),
                      ("dimension2==x", "not a supported segment"), ("dimension\u00b2==x", "not a supported segment"),
                      ("deviceType==tv", "not one DNMA distinguishes"), ("browserName=@Chr", "only == and !="),
                      ("actions>=nan", "a number"), ("actions=@1", "a number"), ("profil>a", "does not apply")):
        with pytest.raises(SegmentError, match=says):
            compile_segment(bad)


rows_strategy = st.lists(st.fixed_dictionaries({
    "label": st.text(max_size=6), "nb_visits": st.integers(0, 5), "nb_hits": st.integers(0, 5) | st.floats(0, 5),
}), max_size=12)


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.sampled_from(["", "nb_visits", "nb_hits", "label", "unknown"]), st.booleans(),
       st.integers(1, 5))
def test_pages_of_a_sorted_report_add_up_to_the_report(rows: list[dict[str, Any]], column: str, desc: bool,
                                                       size: int) -> None:
    """What a paging client reads, page after page until an empty one, is the whole report once."""
    order = "desc" if desc else "asc"
    whole = GenericFilters.parse({"filter_sort_column": column, "filter_sort_order": order, "filter_limit": "-1"})
    everything = whole.rows(rows)
    assert len(everything) == len(rows)
    paged: list[dict[str, Any]] = []
    for offset in range(0, len(rows) + size + 1, size):
        page = GenericFilters.parse({"filter_sort_column": column, "filter_sort_order": order,
                                     "filter_limit": str(size), "filter_offset": str(offset)}).rows(rows)
        assert len(page) <= size
        paged.extend(page)
    assert paged == everything
    if column in ("nb_visits", "nb_hits") and everything:
        keys = [r[column] for r in everything]
        assert keys == sorted(keys, reverse=desc)


def test_generic_filters_as_matomo() -> None:
    rows = [{"label": "page10", "nb_visits": 1, "url": "u"}, {"label": "Page9", "nb_visits": 1, "url": "v"},
            {"label": "a", "nb_visits": 3, "url": "w"}]
    by_label = GenericFilters.parse({"filter_sort_column": "label", "filter_sort_order": "asc"}).rows(rows)
    assert [r["label"] for r in by_label] == ["a", "Page9", "page10"]  # natural, case-insensitive
    # nb_visits ties: by label the other way (Matomo's Sorter), an unknown column sorts by nb_visits.
    assert [r["label"] for r in GenericFilters.parse({"filter_sort_column": "nope"}).rows(rows)] == ["a", "Page9", "page10"]
    shown = GenericFilters.parse({"showColumns": "url", "hideColumns": "label", "filter_limit": "1"}).rows(rows)
    assert shown == [{"url": "u"}]  # hideColumns may drop label; showColumns keeps it otherwise
    assert GenericFilters.parse({"showColumns": "url"}).rows(rows)[0] == {"label": "page10", "url": "u"}
    assert GenericFilters.parse({"filter_limit": "0"}).rows(rows) == []
    assert GenericFilters.parse({"filter_limit": "-7", "filter_offset": "-2"}).rows(rows) == rows
    assert GenericFilters.parse({}).sql_limit() == 100 and GenericFilters.parse({"filter_offset": "5"}).sql_limit() == 105
    assert GenericFilters.parse({"filter_sort_column": "nb_hits"}).sql_limit() is None
    for params, says in (({"filter_limit": "--5"}, "filter_limit"), ({"filter_limit": "\u00b2"}, "filter_limit"),
                         ({"filter_offset": "1.5"}, "filter_offset"), ({"filter_sort_order": "up"}, "filter_sort_order"),
                         ({"filter_truncate": "3"}, "not supported"), ({"filter_pattern": "a" * 1001}, "longer")):
        with pytest.raises(FilterError, match=says):
            GenericFilters.parse(params)
