"""The collector serves the tagging guide (issue 20, item 6): /guide and /guide/en as HTML, and at
the repository path the debug view's rule links name (docs/tagging.md#anchor, relative to /debug),
so every flag's and refusal's link opens on its rule. Through the session's real collector."""

from __future__ import annotations

import html
from urllib.parse import urljoin, urlsplit

from ct_support import Collector

from collector import debug
from collector.guide_routes import to_html
from dnma import guide


def test_every_rule_link_of_the_debug_view_opens_on_its_rule(collector: Collector) -> None:
    links = {guide.link(rule) for rule in
             {*debug.FLAG_RULES.values(), *debug.REASON_RULES.values(), debug.FLAG_RULE_DEFAULT,
              debug.REASON_RULE_DEFAULT}}
    pages: dict[str, str] = {}
    for link in sorted(links):
        url = urljoin(f"{collector.url}/debug", link)  # as the browser resolves it from the view
        path, anchor = urlsplit(url).path, urlsplit(url).fragment
        if path not in pages:
            r = collector.http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (path, r.status_code)
            pages[path] = r.text
        assert f'<a id="{html.escape(anchor)}"></a>' in pages[path], link
    assert set(pages) == {"/docs/tagging.md"}


def test_guide_in_french_and_english(collector: Collector) -> None:
    fr, en = collector.http.get("/guide"), collector.http.get("/guide/en")
    assert fr.status_code == en.status_code == 200
    assert '<html lang="fr">' in fr.text and '<html lang="en">' in en.text
    assert collector.http.get("/docs/tagging.md").text == fr.text
    for page in (fr.text, en.text):
        for anchor in guide.ANCHORS.values():
            assert f'<a id="{anchor}"></a>' in page
        assert "<h3>Services</h3>" in page and "<code>cahier_textes</code>" in page  # the generated section
        assert "dnma quarantine replay --site 12" in page
    assert '<a href="/guide/en">' in fr.text and '<a href="/guide">' in en.text
    assert collector.http.get("/guide/de").status_code == 404


def test_the_renderer_escapes_what_it_does_not_render() -> None:
    out = to_html('Un <script>alert(1)</script> et `<b>` et [lien](javascript:alert(1)) et **gras**\n')
    assert "<script>" not in out and "&lt;script&gt;" in out and "<code>&lt;b&gt;</code>" in out
    assert 'href="javascript' not in out and "<strong>gras</strong>" in out
    table = to_html("| a | b |\n|---|---|\n| `x` | [r](#règle-uai) |\n")
    assert table == ('<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td><code>x</code></td>'
                     '<td><a href="#règle-uai">r</a></td></tr></tbody></table>')
