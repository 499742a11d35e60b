"""France's territorial tree as the annuaire de l'éducation writes it: département (code, name) →
académie → région académique; lets the core decide which perimeters overlap without the referential.

Names are the annuaire's `Libelle_departement`, `Libelle_academie` and `Libelle_region` (the same
values the `etablissements` table and Superset's row-level security compare against); codes are
its `Code_departement` ('035', '2A', '974') and INSEE `Code_region`. Régions académiques and
administrative régions coincide since 2016. Taken from the annuaire's collèges geolocation file
(every département); rebuild it from a newer annuaire if an académie or a région is redrawn.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Departement:
    code: str
    name: str
    academie: str
    region: str
    region_code: str


# code: (name, académie, région académique, INSEE région code)
_TABLE: dict[str, tuple[str, str, str, str]] = {
    "001": ("Ain", "Lyon", "Auvergne-Rhône-Alpes", "84"),
    "002": ("Aisne", "Amiens", "Hauts-de-France", "32"),
    "003": ("Allier", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", "84"),
    "004": ("Alpes-de-Haute-Provence", "Aix-Marseille", "Provence-Alpes-Côte d'Azur", "93"),
    "005": ("Hautes-Alpes", "Aix-Marseille", "Provence-Alpes-Côte d'Azur", "93"),
    "006": ("Alpes-Maritimes", "Nice", "Provence-Alpes-Côte d'Azur", "93"),
    "007": ("Ardèche", "Grenoble", "Auvergne-Rhône-Alpes", "84"),
    "008": ("Ardennes", "Reims", "Grand Est", "44"),
    "009": ("Ariège", "Toulouse", "Occitanie", "76"),
    "010": ("Aube", "Reims", "Grand Est", "44"),
    "011": ("Aude", "Montpellier", "Occitanie", "76"),
    "012": ("Aveyron", "Toulouse", "Occitanie", "76"),
    "013": ("Bouches-du-Rhône", "Aix-Marseille", "Provence-Alpes-Côte d'Azur", "93"),
    "014": ("Calvados", "Normandie", "Normandie", "28"),
    "015": ("Cantal", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", "84"),
    "016": ("Charente", "Poitiers", "Nouvelle-Aquitaine", "75"),
    "017": ("Charente-Maritime", "Poitiers", "Nouvelle-Aquitaine", "75"),
    "018": ("Cher", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "019": ("Corrèze", "Limoges", "Nouvelle-Aquitaine", "75"),
    "2A": ("Corse-du-Sud", "Corse", "Corse", "94"),
    "2B": ("Haute-Corse", "Corse", "Corse", "94"),
    "021": ("Côte-d'Or", "Dijon", "Bourgogne-Franche-Comté", "27"),
    "022": ("Côtes-d'Armor", "Rennes", "Bretagne", "53"),
    "023": ("Creuse", "Limoges", "Nouvelle-Aquitaine", "75"),
    "024": ("Dordogne", "Bordeaux", "Nouvelle-Aquitaine", "75"),
    "025": ("Doubs", "Besançon", "Bourgogne-Franche-Comté", "27"),
    "026": ("Drôme", "Grenoble", "Auvergne-Rhône-Alpes", "84"),
    "027": ("Eure", "Normandie", "Normandie", "28"),
    "028": ("Eure-et-Loir", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "029": ("Finistère", "Rennes", "Bretagne", "53"),
    "030": ("Gard", "Montpellier", "Occitanie", "76"),
    "031": ("Haute-Garonne", "Toulouse", "Occitanie", "76"),
    "032": ("Gers", "Toulouse", "Occitanie", "76"),
    "033": ("Gironde", "Bordeaux", "Nouvelle-Aquitaine", "75"),
    "034": ("Hérault", "Montpellier", "Occitanie", "76"),
    "035": ("Ille-et-Vilaine", "Rennes", "Bretagne", "53"),
    "036": ("Indre", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "037": ("Indre-et-Loire", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "038": ("Isère", "Grenoble", "Auvergne-Rhône-Alpes", "84"),
    "039": ("Jura", "Besançon", "Bourgogne-Franche-Comté", "27"),
    "040": ("Landes", "Bordeaux", "Nouvelle-Aquitaine", "75"),
    "041": ("Loir-et-Cher", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "042": ("Loire", "Lyon", "Auvergne-Rhône-Alpes", "84"),
    "043": ("Haute-Loire", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", "84"),
    "044": ("Loire-Atlantique", "Nantes", "Pays de la Loire", "52"),
    "045": ("Loiret", "Orléans-Tours", "Centre-Val de Loire", "24"),
    "046": ("Lot", "Toulouse", "Occitanie", "76"),
    "047": ("Lot-et-Garonne", "Bordeaux", "Nouvelle-Aquitaine", "75"),
    "048": ("Lozère", "Montpellier", "Occitanie", "76"),
    "049": ("Maine-et-Loire", "Nantes", "Pays de la Loire", "52"),
    "050": ("Manche", "Normandie", "Normandie", "28"),
    "051": ("Marne", "Reims", "Grand Est", "44"),
    "052": ("Haute-Marne", "Reims", "Grand Est", "44"),
    "053": ("Mayenne", "Nantes", "Pays de la Loire", "52"),
    "054": ("Meurthe-et-Moselle", "Nancy-Metz", "Grand Est", "44"),
    "055": ("Meuse", "Nancy-Metz", "Grand Est", "44"),
    "056": ("Morbihan", "Rennes", "Bretagne", "53"),
    "057": ("Moselle", "Nancy-Metz", "Grand Est", "44"),
    "058": ("Nièvre", "Dijon", "Bourgogne-Franche-Comté", "27"),
    "059": ("Nord", "Lille", "Hauts-de-France", "32"),
    "060": ("Oise", "Amiens", "Hauts-de-France", "32"),
    "061": ("Orne", "Normandie", "Normandie", "28"),
    "062": ("Pas-de-Calais", "Lille", "Hauts-de-France", "32"),
    "063": ("Puy-de-Dôme", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", "84"),
    "064": ("Pyrénées-Atlantiques", "Bordeaux", "Nouvelle-Aquitaine", "75"),
    "065": ("Hautes-Pyrénées", "Toulouse", "Occitanie", "76"),
    "066": ("Pyrénées-Orientales", "Montpellier", "Occitanie", "76"),
    "067": ("Bas-Rhin", "Strasbourg", "Grand Est", "44"),
    "068": ("Haut-Rhin", "Strasbourg", "Grand Est", "44"),
    "069": ("Rhône", "Lyon", "Auvergne-Rhône-Alpes", "84"),
    "070": ("Haute-Saône", "Besançon", "Bourgogne-Franche-Comté", "27"),
    "071": ("Saône-et-Loire", "Dijon", "Bourgogne-Franche-Comté", "27"),
    "072": ("Sarthe", "Nantes", "Pays de la Loire", "52"),
    "073": ("Savoie", "Grenoble", "Auvergne-Rhône-Alpes", "84"),
    "074": ("Haute-Savoie", "Grenoble", "Auvergne-Rhône-Alpes", "84"),
    "075": ("Paris", "Paris", "Ile-de-France", "11"),
    "076": ("Seine-Maritime", "Normandie", "Normandie", "28"),
    "077": ("Seine-et-Marne", "Créteil", "Ile-de-France", "11"),
    "078": ("Yvelines", "Versailles", "Ile-de-France", "11"),
    "079": ("Deux-Sèvres", "Poitiers", "Nouvelle-Aquitaine", "75"),
    "080": ("Somme", "Amiens", "Hauts-de-France", "32"),
    "081": ("Tarn", "Toulouse", "Occitanie", "76"),
    "082": ("Tarn-et-Garonne", "Toulouse", "Occitanie", "76"),
    "083": ("Var", "Nice", "Provence-Alpes-Côte d'Azur", "93"),
    "084": ("Vaucluse", "Aix-Marseille", "Provence-Alpes-Côte d'Azur", "93"),
    "085": ("Vendée", "Nantes", "Pays de la Loire", "52"),
    "086": ("Vienne", "Poitiers", "Nouvelle-Aquitaine", "75"),
    "087": ("Haute-Vienne", "Limoges", "Nouvelle-Aquitaine", "75"),
    "088": ("Vosges", "Nancy-Metz", "Grand Est", "44"),
    "089": ("Yonne", "Dijon", "Bourgogne-Franche-Comté", "27"),
    "090": ("Territoire de Belfort", "Besançon", "Bourgogne-Franche-Comté", "27"),
    "091": ("Essonne", "Versailles", "Ile-de-France", "11"),
    "092": ("Hauts-de-Seine", "Versailles", "Ile-de-France", "11"),
    "093": ("Seine-Saint-Denis", "Créteil", "Ile-de-France", "11"),
    "094": ("Val-de-Marne", "Créteil", "Ile-de-France", "11"),
    "095": ("Val-d'Oise", "Versailles", "Ile-de-France", "11"),
    "971": ("Guadeloupe", "Guadeloupe", "Guadeloupe", "01"),
    "972": ("Martinique", "Martinique", "Martinique", "02"),
    "973": ("Guyane", "Guyane", "Guyane", "03"),
    "974": ("La Réunion", "La Réunion", "La Réunion", "04"),
    "975": ("St-Pierre-et-Miquelon", "Saint Pierre et Miquelon", "TOM et Collectivités territoriales", "00"),
    "976": ("Mayotte", "Mayotte", "Mayotte", "06"),
    "977": ("Saint-Barthélémy", "Guadeloupe", "TOM et Collectivités territoriales", "00"),
    "978": ("Saint-Martin", "Guadeloupe", "TOM et Collectivités territoriales", "00"),
    "986": ("Wallis et Futuna", "Wallis et Futuna", "TOM et Collectivités territoriales", "00"),
    "987": ("Polynésie Française", "Polynésie Française", "TOM et Collectivités territoriales", "00"),
    "988": ("Nouvelle Calédonie", "Nouvelle Calédonie", "TOM et Collectivités territoriales", "00"),
}

DEPARTEMENTS: dict[str, Departement] = {code: Departement(code, *row) for code, row in _TABLE.items()}


def key(name: str) -> str:
    """A name's comparison key: accents, case, hyphens and apostrophes do not matter
    ('Créteil' = 'creteil', "Côtes-d'Armor" = 'cotes d armor', 'Ile-de-France' = 'Île-de-France')."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    for sep in ("-", "'", "_"):
        plain = plain.replace(sep, " ")
    return " ".join(plain.split())


def departement_code(raw: str) -> str:
    """The annuaire's writing of a département code: '35' → '035', '02A' → '2A'."""
    code = raw.strip().upper()
    if code in ("02A", "02B"):
        return code[1:]
    return code.zfill(3) if code.isdigit() and len(code) < 3 else code


def _by_key(attr: str) -> dict[str, str]:
    return {key(getattr(d, attr)): getattr(d, attr) for d in DEPARTEMENTS.values()}


ACADEMIES: dict[str, str] = _by_key("academie")  # key → name as the annuaire writes it
REGIONS: dict[str, str] = _by_key("region")
DEPARTEMENT_NAMES: dict[str, str] = _by_key("name")


def departements_where(attr: str, name: str) -> frozenset[str]:
    """The codes of the départements whose `attr` ('name', 'academie', 'region') is `name`."""
    k = key(name)
    return frozenset(d.code for d in DEPARTEMENTS.values() if key(getattr(d, attr)) == k)


def departements_of_region_code(code: str) -> frozenset[str]:
    code = code.strip().zfill(2)
    return frozenset(d.code for d in DEPARTEMENTS.values() if d.region_code == code)
