"""The editors' tagging guide (docs/tagging.md): its vocabulary is exactly dnma.vocab's, its rule
anchors exist, tag-check points to it, and nothing in the repository sends editors to a spec file
outside it (a user's clone has no ../shared)."""

from __future__ import annotations

import re
from pathlib import Path

from cli import tagcheck
from dnma import guide, uai, vocab

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / guide.GUIDE).read_text(encoding="utf-8")


def _section(heading: str) -> str:
    """The generated block's text from `### heading` to the next `###` or the end marker."""
    block = TEXT[TEXT.index(guide.BEGIN):TEXT.index(guide.END)]
    start = block.index(f"### {heading}\n")
    nxt = block.find("\n### ", start + 1)
    return block[start:nxt if nxt > 0 else len(block)]


def _listed(section: str) -> list[str]:
    """The codes of a section's list items (`- \\`code\\``)."""
    return re.findall(r"^- `([^`]+)`", section, re.M)


def test_vocabulary_section_is_generated_from_the_code() -> None:
    assert guide.render(TEXT) == TEXT, "docs/tagging.md is stale: run python -m dnma.guide"
    assert guide.main(["--check"]) == 0


def test_guide_lists_exactly_the_vocabulary() -> None:
    # Read back from the guide's own text, independently of the generator.
    assert _listed(_section("Services")) == list(vocab.SERVICES) and len(vocab.SERVICES) == 25
    assert _listed(_section("Profils")) == list(vocab.PROFILS)
    assert _listed(_section("Types")) == list(vocab.TYPES)
    assert _listed(_section("Propriétés")) == [p.upper() for p in vocab.PROPERTIES]
    classes = _listed(_section("Classes d'appareils, de systèmes et de navigateurs"))
    assert classes == [*vocab.DEVICES, *vocab.OSES, *vocab.BROWSERS]
    assert f"`{uai.CHECK_LETTERS}`" in _section("Lettres de contrôle UAI")
    for slot, prop in vocab.DEFAULT_DIMENSION_MAPPING.items():
        assert f"`dimension{slot}` = {prop.upper()}" in TEXT


def test_rule_anchors_and_internal_links_resolve() -> None:
    ids = set(re.findall(r'<a id="([^"]+)"></a>', TEXT))
    assert set(guide.ANCHORS.values()) <= ids
    links = set(re.findall(r"\]\(#([^)]+)\)", TEXT))
    assert links and links <= ids, links - ids


def test_snippet_sets_every_tagged_property_through_custom_dimensions() -> None:
    snippet = TEXT[TEXT.index('<a id="extrait-_paq"></a>'):TEXT.index('<a id="extrait-dnmajs"></a>')]
    pushed = {int(n) for n in re.findall(r"\['setCustomDimension', (\d+),", snippet)}
    assert pushed == set(vocab.DEFAULT_DIMENSION_MAPPING)  # OUTIL (4) in the third-party example
    assert "_paq.push(['setDebug', true]);" in TEXT and "/debug?idsite=" in TEXT
    assert "dnma tag-check" in TEXT and "cdt_too_old" in TEXT


def test_tag_check_points_to_the_guide() -> None:
    status, message = tagcheck._check_property("service", "NOTE", {})
    assert status == tagcheck.UNKNOWN and guide.link("services") in message
    report = tagcheck.check_hit(0, {"idsite": "1", "rec": "1", "dimension2": "NOTE"}, "GET",
                                dict(vocab.DEFAULT_DIMENSION_MAPPING))
    out = tagcheck.render_text(tagcheck.Outcome("page.har", [], [report]))
    assert "NON respecté" in out and guide.GUIDE in out


_SCANNED = {".py", ".md", ".js", ".yaml", ".yml", ".toml", ".html", ".txt", ".cfg", ".json"}
_SKIPPED = {".git", ".venv", "node_modules", "var", "tests", "dnma.egg-info", "test-artifacts", "dist"}
_OUTSIDE = re.compile(r"shared/spec|\.\./shared|`spec/(TAGGING|TRACKING)\.md`")


def test_nothing_points_to_a_spec_outside_the_repository() -> None:
    offenders = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.suffix not in _SCANNED or _SKIPPED & set(rel.parts) or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
