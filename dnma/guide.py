"""The ENT editors' tagging guide (docs/tagging.md): its vocabulary section is generated here from
dnma.vocab so that the guide cannot drift from what the collector accepts, and its rule anchors are
named here so that messages (tag-check, the debug view) can link to them.

`python -m dnma.guide` rewrites the generated section in place; `--check` exits 1 when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dnma import uai, vocab

# Relative to the repository root; messages name it so an editor finds it in any clone.
GUIDE = "docs/tagging.md"
BEGIN = "<!-- vocabulaire:début (généré par python -m dnma.guide, ne pas modifier à la main) -->"
END = "<!-- vocabulaire:fin -->"

# One anchor per rule of the guide (the `{#…}`-free GitHub anchors of its headings).
ANCHORS: dict[str, str] = {
    "snippet": "extrait-_paq",
    "properties": "propriétés-dnma",
    "services": "services",
    "profils": "profils",
    "types": "types",
    "uai": "règle-uai",
    "outil": "règle-outil",
    "cdt": "règle-cdt-24-h",
    "token": "règle-token_auth",
    "privacy": "règle-vie-privée",
    "refused": "requêtes-refusées",
    "debug": "mode-débogage",
    "tag-check": "dnma-tag-check",
    "report": "signaler-un-problème",
}


def link(rule: str) -> str:
    """Where an editor reads a rule: `docs/tagging.md#anchor`."""
    return f"{GUIDE}#{ANCHORS[rule]}"


def _codes(values: tuple[str, ...], labels: dict[str, str] | None = None) -> list[str]:
    if labels is None:
        return [f"- `{v}`" for v in values]
    return [f"- `{v}` — {labels[v]}" for v in values]


def vocabulary_markdown() -> str:
    """The guide's generated section: every allowed value of dnma.vocab, one per line."""
    mapping = ", ".join(f"`dimension{n}` = {p.upper()}" for n, p in vocab.DEFAULT_DIMENSION_MAPPING.items())
    lines = [
        BEGIN,
        "",
        "### Propriétés",
        "",
        f"Emplacements par défaut : {mapping}.",
        "",
        *[f"- `{p.upper()}`" for p in vocab.PROPERTIES],
        "",
        '<a id="services"></a>',
        "### Services",
        "",
        f"Les {len(vocab.SERVICES)} services (SERVICE ; la casse est libre, stocké en minuscules) :",
        "",
        *_codes(vocab.SERVICES, vocab.SERVICE_LABELS),
        "",
        '<a id="profils"></a>',
        "### Profils",
        "",
        "PROFIL (la casse est libre, stocké en majuscules) :",
        "",
        *_codes(vocab.PROFILS, vocab.PROFIL_LABELS),
        "",
        '<a id="types"></a>',
        "### Types",
        "",
        "TYPE : `NATIF` pour un service de l'ENT, `TIERS` pour un outil tiers (alors OUTIL est obligatoire) :",
        "",
        *_codes(vocab.TYPES),
        "",
        "### Classes d'appareils, de systèmes et de navigateurs",
        "",
        "Déduites du User-Agent par le collecteur (rien à envoyer) :",
        "",
        "Appareils :",
        "",
        *_codes(vocab.DEVICES, vocab.DEVICE_LABELS),
        "",
        "Systèmes :",
        "",
        *_codes(vocab.OSES),
        "",
        "Navigateurs :",
        "",
        *_codes(vocab.BROWSERS),
        "",
        "### Lettres de contrôle UAI",
        "",
        f"`{uai.CHECK_LETTERS}` (23 lettres : ni I, ni O, ni Q).",
        "",
        END,
    ]
    return "\n".join(lines)


def render(text: str) -> str:
    """The guide's text with its generated section replaced by the current one."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{GUIDE}: the markers of the generated vocabulary section are missing")
    return text[:start] + vocabulary_markdown() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(__file__).resolve().parent.parent / GUIDE
    try:
        text = path.read_text(encoding="utf-8")
        fresh = render(text)
    except (OSError, ValueError) as exc:
        print(f"dnma.guide: {exc}", file=sys.stderr)
        return 2
    if "--check" in args:
        if fresh != text:
            print(f"{GUIDE}: vocabulary section is stale; run python -m dnma.guide", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
