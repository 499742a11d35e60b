"""The conformance report as files: a CSV (one row per scope and criterion, `;`-separated, figures as
numbers) and a printable French HTML page (verdicts, figures per service, the worst examples)."""

from __future__ import annotations

import csv
import html
from typing import IO

from aggregator.conformance import criteria as c
from aggregator.conformance.figures import Figure, Report
from dnma import vocab

CSV_COLUMNS = ("site_id", "debut", "fin", "portee", "service", "critere", "libelle", "numerateur", "denominateur",
               "valeur", "seuil", "verdict", "reference")


def _value(f: Figure) -> str:
    if f.value is None:
        return ""
    return str(int(f.value)) if not f.criterion.share else f"{f.value:.6f}"


def write_csv(report: Report, out: IO[str]) -> int:
    """Header then one row per figure; returns the rows written."""
    w = csv.writer(out, delimiter=";", lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for f in report.figures:
        k = f.criterion
        w.writerow([report.site.id, report.debut.isoformat(), report.fin.isoformat(), f.scope, f.service, k.key,
                    k.label, f.numerator, f.denominator, _value(f), f"{k.threshold:g}", f.verdict, k.reference])
    return len(report.figures)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %".replace(".", ",")


def _shown(f: Figure) -> str:
    if not f.criterion.share:
        return "—" if f.value is None else str(int(f.value))
    return _pct(f.value)


def _num(n: int) -> str:
    return f"{n:,}".replace(",", "\u202f")


_VERDICT_CLASS = {c.CONFORME: "ok", c.NON_CONFORME: "ko", c.A_VERIFIER: "warn", c.NON_EVALUABLE: "na"}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #161616; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: .25em .5em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 600; white-space: nowrap; }
.ok { color: #18753c; } .ko { color: #ce0500; } .warn { color: #b34000; } .na { color: #666; }
.note { color: #444; font-size: .9em; }
@media print {
  body { margin: 0; font-size: 10pt; }
  h2 { break-after: avoid; } table, tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  @page { size: A4; margin: 1.5cm; }
}
"""


def _verdict(v: str) -> str:
    return f'<span class="verdict {_VERDICT_CLASS[v]}">{html.escape(v)}</span>'


def _table(head: tuple[str, ...], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="n">{v}</td>' if i in numeric else f"<td>{v}</td>"
                                    for i, v in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_html(report: Report, out: IO[str]) -> None:
    site = report.site
    e = html.escape
    period = f"du {report.debut:%d/%m/%Y} au {report.fin:%d/%m/%Y}"
    parts = [
        "<!DOCTYPE html>", '<html lang="fr"><head><meta charset="utf-8">',
        f"<title>Conformité du marquage — {e(site.name)} — {period}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Rapport de conformité du marquage — {e(site.name)} (site {site.id})</h1>",
        f"<p>Période {period} (fuseau du site : {e(site.timezone)}). Projet ENT : {e(site.projet or '—')}. "
        f"{_num(report.hits)} hits reçus.</p>",
        f'<p class="note">Chaque critère est jugé au seuil du plan de marquage (docs/tagging.md) ; le site ou '
        f"un service de moins de {_num(report.min_hits)} hits est montré mais « non évaluable ».</p>",
        "<h2>Verdicts</h2>",
    ]
    rows = []
    for f in report.site_figures():
        k = f.criterion
        rows.append([e(k.label), _shown(f), f"{_num(f.numerator)} / {_num(f.denominator)}", e(k.threshold_text()),
                     _verdict(f.verdict), f"<code>{e(k.reference)}</code>"])
    parts.append(_table(("Critère", "Valeur", "Nombre", "Seuil", "Verdict", "Règle"), rows, {1, 2}))

    parts.append("<h2>Par service</h2>")
    head = ("Service", "Hits", *(k.label for k in c.SERVICE_CRITERIA))
    rows = []
    for service in report.services():
        label = vocab.SERVICE_LABELS.get(service)
        name = e(label) + f" <code>{e(service)}</code>" if label else f"<code>{e(service or '(absent)')}</code> (inconnu)"
        cells = [name, _num(report.figure("uai_valide", service).denominator)]
        for k in c.SERVICE_CRITERIA:
            f = report.figure(k.key, service)
            cells.append(f"{_shown(f)}<br>{_verdict(f.verdict)}")
        rows.append(cells)
    parts.append(_table(head, rows, set(range(1, len(head)))))

    never = report.services_never_seen
    parts.append(f"<h2>Services jamais vus ({len(never)} sur {len(vocab.SERVICES)})</h2>")
    parts.append("<p>" + (", ".join(f"{e(vocab.SERVICE_LABELS[s])} (<code>{e(s)}</code>)" for s in never)
                          if never else "Les 25 services ont été vus.") + "</p>")

    parts.append("<h2>Pires exemples</h2>")
    for ex in report.examples.values():
        total = f" — {_num(ex.total)} au total, {len(ex.rows)} montrés" if ex.total and ex.total > len(ex.rows) else ""
        parts.append(f"<h3>{e(ex.title)}{total}</h3>")
        if not ex.rows:
            parts.append('<p class="note">Aucun.</p>')
            continue
        numeric = {i for i, v in enumerate(ex.rows[0]) if isinstance(v, int)}
        parts.append(_table(ex.columns, [[_num(v) if isinstance(v, int) else e(str(v)) for v in row]
                                         for row in ex.rows], numeric))
    parts.append("</body></html>")
    out.write("\n".join(parts) + "\n")
