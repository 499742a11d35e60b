"""The tagging guide served by the collector: `GET /guide` (French, docs/tagging.md) and
`/guide/en` (English, docs/tagging.en.md) as HTML, the French one also under its repository path
(`/docs/tagging.md`), so the debug view's rule links (`docs/tagging.md#anchor`, dnma.guide.link,
relative to /debug) open on the rule.

The guides are Markdown written to a small subset (headings, paragraphs, lists, tables, fenced code,
inline code, bold, italics, links, `<a id>` anchors); `to_html` renders exactly that subset, every
text escaped, so no dependency is needed. Rendered once per worker.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from dnma import guide
from dnma.settings import REPO_ROOT

# path served -> guide language
PATHS = {"/guide": "fr", f"/{guide.GUIDE}": "fr", "/guide/en": "en"}
# a guide's link to a guide (relative to docs/) -> where this collector serves it
SERVED = {"tagging.md": "/guide", "tagging.en.md": "/guide/en"}
_ANCHOR = re.compile(r'^<a id="([^"<>]+)"></a>$')
_INLINE = re.compile(
    r"`([^`]+)`"  # code
    r"|\[((?:[^\]`]|`[^`]*`)+)\]\(([^)\s]+)\)"  # [text](url), the text may hold code
    r"|\*\*(.+?)\*\*"  # bold
    r"|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"  # italics
)


def inline(text: str) -> str:
    out, at = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[at:m.start()]))
        code, label, url, bold, italic = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif label is not None:
            path, _, anchor = url.partition("#")
            if path in SERVED:  # the other guide: its page here
                url = SERVED[path] + (f"#{anchor}" if anchor else "")
            if url.startswith(("#", "/guide", "https://", "http://")):
                out.append(f'<a href="{html.escape(url)}">{inline(label)}</a>')
            else:  # a file of the repository: named, not linked (the collector does not serve it)
                out.append(f"{inline(label)} (<code>{html.escape(url)}</code>)")
        elif bold is not None:
            out.append(f"<strong>{inline(bold)}</strong>")
        else:
            out.append(f"<em>{inline(italic)}</em>")
        at = m.end()
    out.append(html.escape(text[at:]))
    return "".join(out)


def _cells(row: str) -> list[str]:
    # a `|` inside code is written `\|` in the guides
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def to_html(markdown: str) -> str:
    """The body HTML of a guide (the subset described in the module's docstring)."""
    lines = markdown.splitlines()
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:j]))}</code></pre>")
            i = j + 1
            continue
        if stripped.startswith("<!--") and stripped.endswith("-->"):
            i += 1
            continue
        anchor = _ANCHOR.match(stripped)
        heading = re.match(r"^(#{1,6}) (.+)$", line)
        if anchor or heading or not stripped or stripped.startswith("|") or line.startswith("- "):
            flush()
        if anchor:
            out.append(f'<a id="{html.escape(anchor.group(1))}"></a>')
        elif heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            continue
        elif line.startswith("- "):
            items: list[str] = []
            while i < len(lines) and (lines[i].startswith("- ") or (items and lines[i].startswith("  ")
                                                                       and lines[i].strip())):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:].strip())
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in items) + "</ul>")
            continue
        elif stripped:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


_PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 1em auto; padding: 0 1em; line-height: 1.45; }}
  code {{ background: #f3f3f3; padding: 0 .2em; font-size: 90%; }}
  pre {{ background: #f3f3f3; padding: .6em; overflow-x: auto; }} pre code {{ background: none; padding: 0; }}
  table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ddd; padding: .3em .5em; vertical-align: top; }}
  th {{ background: #f3f3f3; }} :target + h2, :target + h3 {{ background: #fff6c2; }}
  nav {{ float: right; }}
</style>
</head>
<body>
<nav>{other}</nav>
{body}
</body>
</html>
"""


@lru_cache(maxsize=2)
def page(lang: str) -> str | None:
    """The guide in `lang` as a whole HTML page; None when the file is not there (an install
    without the repository's docs/)."""
    try:
        text = (REPO_ROOT / guide.GUIDES[lang]).read_text(encoding="utf-8")
    except OSError:
        return None
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "DNMA")
    other = ('<a href="/guide/en" hreflang="en">English</a>' if lang == "fr"
             else '<a href="/guide" hreflang="fr">Français</a>')
    return _PAGE.format(lang=lang, title=html.escape(title), other=other, body=to_html(text))


def build_router() -> APIRouter:
    router = APIRouter()

    def route(lang: str) -> Callable[[], Awaitable[Response]]:
        async def serve_guide() -> Response:
            found = page(lang)
            if found is None:
                return PlainTextResponse(f"tagging guide not installed ({guide.GUIDES[lang]})\n", status_code=404)
            return HTMLResponse(found, headers={"Cache-Control": "public, max-age=3600"})

        return serve_guide

    for path, lang in PATHS.items():
        router.add_api_route(path, route(lang), methods=["GET"], include_in_schema=False)
    return router
