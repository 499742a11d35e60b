"""The criteria of the tagging conformance report and their thresholds, with the rule of the tagging
plan each one checks (docs/tagging.md, the editors' guide of spec TAGGING.md), and the verdicts.

The tagging plan states the rules, not figures: the thresholds below are the plan's qualification
thresholds as DNMA fixes them, set to agree with the default thresholds of the quality checks
(settings.quality_*), so that by default a site judged conforming raises no alert. The checks'
thresholds are an operator's tuning (settings); these are the plan's and change only here."""

from __future__ import annotations

from dataclasses import dataclass

from dnma import guide

CONFORME = "conforme"
NON_CONFORME = "non conforme"
A_VERIFIER = "à vérifier"  # a signal to look at, not a breach of a rule (services never seen)
NON_EVALUABLE = "non évaluable"  # too few hits, no declared perimeter, no referential
VERDICTS = (CONFORME, NON_CONFORME, A_VERIFIER, NON_EVALUABLE)


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str  # French, as the report and the dashboard show it
    threshold: float
    at_least: bool  # True: the value must be >= threshold; False: <= threshold
    rule: str  # the guide's rule (dnma.guide.ANCHORS)
    share: bool = True  # a share (0-1) rather than a count
    breach: str = NON_CONFORME  # the verdict when the threshold is missed

    @property
    def reference(self) -> str:
        return guide.link(self.rule)

    def verdict(self, value: float | None) -> str:
        if value is None:
            return NON_EVALUABLE
        ok = value >= self.threshold if self.at_least else value <= self.threshold
        return CONFORME if ok else self.breach

    def threshold_text(self) -> str:
        sign = "≥" if self.at_least else "≤"
        if not self.share:
            return f"{sign} {int(self.threshold)}"
        return f"{sign} {100 * self.threshold:g} %".replace(".", ",")


# Shares of the window's hits (all actions: every hit carries the page's properties).
UAI_VALIDE = Criterion("uai_valide", "Hits avec un UAI valide", 0.98, True, "uai")  # invalid_uai: 2 %
PROFIL_CONNU = Criterion("profil_connu", "Hits avec un PROFIL connu", 0.95, True, "profils")  # missing_properties: 5 %
SERVICE_CONNU = Criterion("service_connu", "Hits avec un SERVICE connu (des 25)", 0.95, True, "services")
TYPE_CONNU = Criterion("type_connu", "Hits avec un TYPE connu (NATIF ou TIERS)", 0.95, True, "types")
# Of the hits with a known TYPE: TIERS names its OUTIL, NATIF leaves it empty (Règle OUTIL).
OUTIL_CONFORME = Criterion("outil_conforme", "Hits à TYPE connu dont l'OUTIL suit la règle", 0.95, True, "outil")
# Site-wide criteria.
SERVICES_JAMAIS_VUS = Criterion("services_jamais_vus", "Services des 25 jamais vus", 0, False, "services",
                                share=False, breach=A_VERIFIER)  # an ENT may not offer every service
HORS_PERIMETRE = Criterion("hors_perimetre", "Hits avec un UAI hors du périmètre déclaré", 0.01, False, "uai")
ETABLISSEMENTS_VUS = Criterion("etablissements_vus", "Établissements du périmètre vus dans la période", 0.5, True,
                               "uai")  # quality_coverage_min_share, "objectif 100 % des ENT marqués"
DOUBLONS = Criterion("doublons", "Hits en double (pv_id répété, hit identique à quelques secondes)", 0.02, False,
                     "snippet")  # quality_duplicates_max_share
HORLOGE = Criterion("horloge", "Hits datés dans le futur (horloge ou cdt décalés)", 0.05, False,
                    "cdt")  # quality_lateness_max_share, which clock_skew shares

# Per site and per service: the shares of the properties.
PROPERTY_CRITERIA = (UAI_VALIDE, PROFIL_CONNU, SERVICE_CONNU, TYPE_CONNU, OUTIL_CONFORME)
SITE_CRITERIA = (*PROPERTY_CRITERIA, SERVICES_JAMAIS_VUS, HORS_PERIMETRE, ETABLISSEMENTS_VUS, DOUBLONS, HORLOGE)
# Per service, SERVICE_CONNU is the service's own name: known or not, a whole row says it.
SERVICE_CRITERIA = (UAI_VALIDE, PROFIL_CONNU, TYPE_CONNU, OUTIL_CONFORME, DOUBLONS, HORLOGE)
BY_KEY = {c.key: c for c in SITE_CRITERIA}
