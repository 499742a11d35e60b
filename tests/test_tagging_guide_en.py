"""The English tagging guide (docs/tagging.en.md) beside the French one (issue 20, item 6): the same
vocabulary generated from dnma.vocab (drift test), the same rule anchors (a rule's link works in
both), every internal link resolves, and both tell editors of the quarantine and the conformance
report."""

from __future__ import annotations

import re
from pathlib import Path

from dnma import guide, vocab

ROOT = Path(__file__).resolve().parent.parent
TEXTS = {lang: (ROOT / rel).read_text(encoding="utf-8") for lang, rel in guide.GUIDES.items()}
EN = TEXTS["en"]


def _listed(heading: str) -> list[str]:
    """The codes listed under `### heading` in the English guide's generated block, read back
    from its text independently of the generator."""
    begin, end = guide.MARKERS["en"]
    block = EN[EN.index(begin):EN.index(end)]
    start = block.index(f"### {heading}\n")
    nxt = block.find("\n### ", start + 1)
    return re.findall(r"^- `([^`]+)`", block[start:nxt if nxt > 0 else len(block)], re.M)


def test_english_vocabulary_is_generated_from_the_code() -> None:
    assert guide.render(EN, "en") == EN, "docs/tagging.en.md is stale: run python -m dnma.guide"
    assert guide.main(["--check"]) == 0
    assert _listed("Services") == list(vocab.SERVICES) and len(vocab.SERVICES) == 25
    assert _listed("Profiles") == list(vocab.PROFILS)
    assert _listed("Types") == list(vocab.TYPES)
    assert _listed("Properties") == [p.upper() for p in vocab.PROPERTIES]
    assert _listed("Device, system and browser classes") == [*vocab.DEVICES, *vocab.OSES, *vocab.BROWSERS]


def test_a_stale_english_section_is_caught() -> None:
    stale = EN.replace("- `notes` — Notes\n", "", 1)
    assert stale != EN and guide.render(stale, "en") == EN


def test_both_guides_have_the_same_anchors_and_their_links_resolve() -> None:
    ids = {lang: set(re.findall(r'<a id="([^"]+)"></a>', text)) for lang, text in TEXTS.items()}
    assert ids["en"] == ids["fr"] - {"english-summary"}  # the French guide's pointer to this one
    assert set(guide.ANCHORS.values()) <= ids["en"]
    for lang, text in TEXTS.items():
        links = set(re.findall(r"\]\(#([^)]+)\)", text))
        assert links and links <= ids[lang], (lang, links - ids[lang])
    assert "](tagging.en.md)" in TEXTS["fr"] and "](tagging.md)" in EN  # each names the other


def test_both_guides_tell_of_the_quarantine_and_the_conformance_report() -> None:
    for text in TEXTS.values():
        assert "dnma quarantine list --site" in text and "dnma quarantine replay --site" in text
        assert "dnma conformance --site 12 --from" in text and "--to" in text
        assert "_paq.push(['setDebug', true]);" in text and "/debug?idsite=" in text
        assert "/guide" in text  # where the collector serves it
    snippet = EN[EN.index('<a id="extrait-_paq"></a>'):EN.index('<a id="extrait-dnmajs"></a>')]
    pushed = {int(n) for n in re.findall(r"\['setCustomDimension', (\d+),", snippet)}
    assert pushed == set(vocab.DEFAULT_DIMENSION_MAPPING)
