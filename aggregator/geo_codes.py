"""ISO 3166-2:FR codes of départements and régions, as Superset's country_map ('france',
'france_regions') keys its shapes: 'FR-35', 'FR-2A', 'FR-BRE'; overseas by their own code."""

from __future__ import annotations

# Overseas départements / collectivités (annuaire code -> ISO 3166-2). The five DROM are both a
# département and a région: Superset draws them with these codes in both maps.
OUTRE_MER_ISO: dict[str, str] = {
    "971": "FR-GP",
    "972": "FR-MQ",
    "973": "FR-GF",
    "974": "FR-RE",
    "975": "FR-PM",
    "976": "FR-YT",
    "977": "FR-BL",
    "978": "FR-MF",
    "986": "FR-WF",
    "987": "FR-PF",
    "988": "FR-NC",
}

# INSEE région codes (the annuaire's Code_region, since the 2016 régions) -> ISO 3166-2.
REGION_ISO: dict[str, str] = {
    "01": "FR-GP",
    "02": "FR-MQ",
    "03": "FR-GF",
    "04": "FR-RE",
    "06": "FR-YT",
    "11": "FR-IDF",
    "24": "FR-CVL",
    "27": "FR-BFC",
    "28": "FR-NOR",
    "32": "FR-HDF",
    "44": "FR-GES",
    "52": "FR-PDL",
    "53": "FR-BRE",
    "75": "FR-NAQ",
    "76": "FR-OCC",
    "84": "FR-ARA",
    "93": "FR-PAC",
    "94": "FR-COR",
}


def departement_code(raw: str) -> str:
    """The annuaire's writing of a département: '035', '2A', '974'.

    The collèges file writes Corsica '02A'; the UAI rules (dnma.uai) say '2A', so we do too.
    A bare '35' (some files drop the zero) becomes '035'.
    """
    code = raw.strip().upper()
    if code in ("02A", "02B"):
        return code[1:]
    if code.isdigit() and len(code) < 3:
        return code.zfill(3)
    return code


def departement_iso(code: str) -> str:
    """'035' -> 'FR-35', '2A' -> 'FR-2A', '974' -> 'FR-RE'; '' when unknown."""
    code = departement_code(code)
    if not code:
        return ""
    if code in OUTRE_MER_ISO:
        return OUTRE_MER_ISO[code]
    if code in ("2A", "2B"):
        return f"FR-{code}"
    if code.isdigit() and len(code) == 3 and code[0] == "0" and 1 <= int(code) <= 95:
        return f"FR-{code[1:]}"
    return ""


def region_iso(region_code: str, departement: str = "") -> str:
    """INSEE région code -> 'FR-BRE'. Code '00' (TOM, collectivités) takes its département's code."""
    code = region_code.strip()
    if code.isdigit():
        code = code.zfill(2)
    if code in REGION_ISO:
        return REGION_ISO[code]
    dep = departement_code(departement)
    return OUTRE_MER_ISO.get(dep, "")
