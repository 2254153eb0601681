"""The leaderboard: every run under a directory -> a Markdown table and one static HTML page.

Measured rows come from our run stores (recomputed, never copied). Published numbers of other systems
come from `eval/reported_results.json` with their sources, in a separate, visually distinct section:
they were obtained on other toolchains, benchmark revisions and budgets, so they are never ranked
together with measured rows. The page needs no server and loads nothing from the network: CSS and the
pass@k plots (matplotlib SVG) are inline.
"""

from __future__ import annotations

import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval.audit import audit_counts
from eval.errors import EvalError
from eval.report import REPORT_FILE, STORE_FILE, headline_ks, report_for_dir

REPORTED_PATH = Path(__file__).with_name("reported_results.json")
SET_ORDER = ("minif2f-test", "minif2f-valid", "putnambench", "proverbench", "proofnet-test", "proofnet-valid")


@dataclass
class Site:
    markdown: Path
    html: Path
    runs: int
    reported: int
    skipped: list[str]  # run directories left out, each with its reason


def collect_reports(runs_dir: Path, *, n_boot: int = 1000,
                    skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """One report per run directory under `runs_dir` (a store, else a saved report.json). A run that cannot be
    read (corrupt store, bad report) is left out and its reason appended to `skipped`: one bad directory does
    not take the whole leaderboard down. Given one run directory, its error is raised."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise EvalError(f"runs directory {runs_dir} does not exist")
    single = (runs_dir / STORE_FILE).is_file()
    candidates = [runs_dir] if single else sorted(p for p in runs_dir.iterdir() if p.is_dir())
    reports, left_out = [], []
    for run_dir in candidates:
        try:
            report = _read_run(run_dir, n_boot)
        except EvalError as e:
            if single:
                raise
            left_out.append(f"{run_dir}: {e}")
            continue
        if report is not None and report["overall"]["problems"]:
            reports.append(report)
    if skipped is not None:
        skipped.extend(left_out)
    if not reports:
        raise EvalError(f"no runs with recorded attempts under {runs_dir} (expected <run>/{STORE_FILE})"
                        + "".join(f"; skipped {why}" for why in left_out))
    return reports


def _read_run(run_dir: Path, n_boot: int) -> dict[str, Any] | None:
    """The report of one run directory: rebuilt from its store, else its saved report; None when neither."""
    if (run_dir / STORE_FILE).is_file():
        report = report_for_dir(run_dir, n_boot=n_boot)
        report["audit"] = audit_counts(run_dir)
        return report
    if not (run_dir / REPORT_FILE).is_file():
        return None
    try:
        report = json.loads((run_dir / REPORT_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvalError(f"{run_dir / REPORT_FILE} is not valid JSON ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("overall"), dict) or "run" not in report:
        raise EvalError(f"{run_dir / REPORT_FILE} is not a Subgoal report")
    return report


def load_reported(path: Path = REPORTED_PATH) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EvalError(f"reported results file {path}: {e}") from None
    regimes = data.get("regimes") or {}
    for row in data["results"]:
        if row["source"] not in data["sources"]:
            raise EvalError(f"reported result of {row['system']} cites unknown source {row['source']!r}")
        if row.get("regime") not in regimes:
            raise EvalError(f"reported result of {row['system']} on {row['benchmark']} has regime "
                            f"{row.get('regime')!r}, not one of {', '.join(regimes) or '(none defined)'}")
    return data


def _by_regime(rows: list[dict[str, Any]], regimes: dict[str, str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """A benchmark's reported rows split by how their budget was spent, in the file's regime order: a pass@k row
    and an agentic row are never in one table."""
    return [(name, [r for r in rows if r["regime"] == name]) for name in regimes
            if any(r["regime"] == name for r in rows)]


def _by_set(items: list[dict[str, Any]], key) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    order = {name: i for i, name in enumerate(SET_ORDER)}
    return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _set_of(report: dict[str, Any]) -> str:
    """The set; PutnamBench in two tracks, as PutnamBench reports them: `lean-wsolution` (the recorded answers
    given to the prover) and `lean-nosolution` (the prover produces the answers), never ranked together."""
    name = str(report["run"].get("problem_set") or "unknown")
    if "putnam" not in name.lower():
        return name
    given = report["run"].get("putnam_answers") == "given"
    return f"{name} ({'lean-wsolution' if given else 'lean-nosolution'})"


_set_label = _set_of


def _audited(report: dict[str, Any]) -> str:
    """Kernel replay (`subgoal lean audit`): proved attempts the checker accepted / rejected, of those proved."""
    audit = report.get("audit") or {}
    if not audit.get("audited"):
        return "–"
    rejected = f", {audit['rejected']} rejected" if audit.get("rejected") else ""
    return f"{audit['accepted']}/{audit['proved']} ({audit['checker']}{rejected})"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _cell(report: dict[str, Any], k: int) -> str:
    """pass@k [interval], with the problems it covers where that is fewer than the run's (some have n < k)."""
    p = report["overall"]["pass_at_k"].get(str(k))
    if p is None:
        return "–"
    total = report["overall"]["problems"]
    covers = p.get("problems", total)
    return (f"{_pct(p['value'])} [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]"
            + (f" ({covers}/{total} problems)" if covers < total else ""))


def _complete(report: dict[str, Any]) -> bool:
    return bool(report.get("complete", True))


def _ranked(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete runs first (by problems solved), then incomplete ones: a partial run is never ranked above."""
    return sorted(runs, key=lambda r: (not _complete(r), -r["overall"]["solved"]))


def _set_ks(reports: list[dict[str, Any]]) -> list[int]:
    return sorted({k for r in reports for k in headline_ks(r)})


def _budget(run: dict[str, Any]) -> str:
    budget = run.get("budget") or {}
    parts = [f"{k}={v}" for k, v in budget.items() if v is not None] if isinstance(budget, dict) else [str(budget)]
    return ", ".join(parts) or "–"


def _versions(run: dict[str, Any]) -> str:
    versions = dict(run.get("versions") or {})
    if commit := versions.get("git_commit"):
        versions["git_commit"] = str(commit)[:10]
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "–"


def _reported_result(row: dict[str, Any]) -> str:
    if row.get("solved") is not None:
        return f"{row['solved']}/{row['total']}" if row.get("total") else f"{row['solved']} solved"
    return _pct(row.get("value"))


# ---------------------------------------------------------------- Markdown


def render_markdown(reports: list[dict[str, Any]], reported: dict[str, Any]) -> str:
    lines = ["# Subgoal leaderboard", "", f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
             "pass@k by the unbiased estimator; [95% bootstrap interval over problems]. Problems a run never attempted "
             "count as failures; a run marked INCOMPLETE has missing or short problems; `(m/N problems)`: only m "
             "problems have k or more samples.", "",
             "## Measured (our runs)", ""]
    for name, runs in _by_set(reports, _set_of).items():
        ks = _set_ks(runs)
        lines += [f"### {name}", "", "| run | model | strategy | samples | solved | kernel-checked | "
                  + " | ".join(f"pass@{k}" for k in ks) + " |", "|---" * (6 + len(ks)) + "|"]
        for r in _ranked(runs):
            run = r["run"]
            badge = "" if _complete(r) else " **INCOMPLETE**"
            lines.append(f"| {run.get('name', '')}{badge} | {run.get('model', '')} | {run.get('strategy', '')} | "
                         f"{r['overall']['samples_min']} | {r['overall']['solved']}/{r['overall']['problems']} | "
                         f"{_audited(r)} | " + " | ".join(_cell(r, k) for k in ks) + " |")
        lines.append("")
    lines += ["### Run details", "", "| run | set | model | strategy | budget | versions | date | tokens | GPU s | Lean CPU s |",
              "|---" * 10 + "|"]
    for r in reports:
        run, cost = r["run"], r["cost"]
        lines.append(f"| {run.get('name', '')} | {_set_label(r)} | {run.get('model', '')} | {run.get('strategy', '')} | "
                     f"{_budget(run)} | {_versions(run)} | {run.get('date', '')} | {cost['tokens']:,} | "
                     f"{cost['gpu_s']:.1f} | {cost['lean_cpu_s']:.1f} |")
    lines += ["", "## Reported by others (not measured here)", "",
              "_Published figures, quoted from their sources. Toolchains, benchmark revisions and budgets differ; "
              "do not rank them against the measured rows above._", ""]
    sources, regimes = reported["sources"], reported["regimes"]
    for name, rows in _by_set(reported["results"], lambda r: r["benchmark"]).items():
        lines += [f"### {name} (reported)", ""]
        for regime, group in _by_regime(rows, regimes):
            lines += [f"**{regime}**: {regimes[regime]}", "",
                      "| system | size | result | budget | source | note |", "|---" * 6 + "|"]
            for row in group:
                src = sources[row["source"]]
                lines.append(f"| {row['system']} | {row['size']} | {_reported_result(row)} | {row['budget']} | "
                             f"[{row['source']}]({src['url']}) | {row.get('note', '')} |")
            lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML


def plot_svg(runs: list[dict[str, Any]], title: str) -> str:
    """pass@k curves (with interval bands) of the measured runs of one set, as an inline SVG string."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r in runs:
        table = r["overall"]["pass_at_k"]
        ks = sorted(int(k) for k in table)
        if not ks:
            continue
        values = [100 * table[str(k)]["value"] for k in ks]
        label = f"{r['run'].get('name', '')} ({r['run'].get('model', '')})"
        ax.plot(ks, values, marker="o" if len(ks) < 20 else None, markersize=3, label=label)
        ax.fill_between(ks, [100 * table[str(k)]["ci_low"] for k in ks],
                        [100 * table[str(k)]["ci_high"] for k in ks], alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title}: measured pass@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1.4rem;font-size:.9rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
section.measured{border-left:6px solid #1f883d;padding-left:1rem}
section.reported{border-left:6px solid #bf8700;padding-left:1rem;background:#fff8e5}
section.reported th{background:#fbeec1} .badge{display:inline-block;font-size:.75rem;font-weight:600;
padding:.1rem .45rem;border-radius:1rem;vertical-align:middle;margin-left:.4rem}
.badge.measured{background:#dafbe1;color:#1a7f37} .badge.incomplete{background:#ffebe9;color:#cf222e} .badge.reported{background:#fbeec1;color:#7d4e00}
.plot svg{max-width:100%;height:auto} .note{color:#57606a;font-size:.85rem}
.scroll{overflow-x:auto} table.details td{font-size:.8rem;overflow-wrap:anywhere}
"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _table(headers: list[str], rows: list[list[str]], row_class: str, numeric: set[int] = frozenset(),
           table_class: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{row_class}">' + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="scroll"><table class="{table_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def render_html(reports: list[dict[str, Any]], reported: dict[str, Any]) -> str:
    parts = [f"<h1>Subgoal leaderboard</h1><p class='sub'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
             "pass@k by the unbiased estimator over n &ge; k samples; brackets: 95% bootstrap interval over problems.</p>",
             '<section class="measured" id="measured"><h2>Measured<span class="badge measured">our runs</span></h2>']
    for name, runs in _by_set(reports, _set_of).items():
        ks = _set_ks(runs)
        rows = [[_e(r["run"].get("name")) + ("" if _complete(r) else '<span class="badge incomplete">INCOMPLETE</span>'),
                 _e(r["run"].get("model")), _e(r["run"].get("strategy")),
                 _e(r["overall"]["samples_min"]), f"{r['overall']['solved']}/{r['overall']['problems']}",
                 _e(_audited(r)), *[_e(_cell(r, k)) for k in ks]]
                for r in _ranked(runs)]
        parts += [f"<h3>{_e(name)}</h3>",
                  _table(["run", "model", "strategy", "samples", "solved", "kernel-checked",
                          *[f"pass@{k}" for k in ks]], rows, "measured-row",
                         numeric={3, 4, *range(6, 6 + len(ks))}),
                  f'<div class="plot">{plot_svg(runs, name)}</div>']
    detail_rows = []
    for r in reports:
        run, cost, per = r["run"], r["cost"], r.get("cost_per_solved") or {}
        detail_rows.append([_e(run.get("name")), _e(_set_label(r)), _e(run.get("model")), _e(run.get("strategy")),
                            _e(_budget(run)), _e(_versions(run)), _e(str(run.get("date", ""))[:16].replace("T", " ")), f"{cost['tokens']:,}",
                            f"{cost['gpu_s']:.1f}", f"{cost['lean_cpu_s']:.1f}",
                            f"{per['tokens']:,.0f}" if per else "–", "yes" if r.get("complete") else "no"])
    parts += ["<h3>Run details</h3>",
              _table(["run", "set", "model", "strategy", "budget", "versions", "date", "tokens", "GPU s",
                      "Lean CPU s", "tokens / solved", "complete"], detail_rows, "measured-row", numeric={7, 8, 9, 10},
                     table_class="details"),
              "</section>"]
    sources = reported["sources"]
    parts.append('<section class="reported" id="reported"><h2>Reported by others'
                 '<span class="badge reported">published, not measured here</span></h2>'
                 "<p class='note'>Figures as their sources state them. Lean/Mathlib versions, benchmark revisions "
                 "and budgets differ between rows and from our runs: they are context, not a ranking.</p>")
    regimes = reported["regimes"]
    for name, rows in _by_set(reported["results"], lambda r: r["benchmark"]).items():
        parts.append(f"<h3>{_e(name)} <span class='badge reported'>reported</span></h3>")
        for regime, group in _by_regime(rows, regimes):
            table_rows = [[_e(r["system"]), _e(r["size"]), _e(_reported_result(r)), _e(r["budget"]),
                           f'<a href="{_e(sources[r["source"]]["url"])}" title="{_e(sources[r["source"]]["title"])}">'
                           f"{_e(r['source'])}</a>", _e(r.get("note", ""))] for r in group]
            parts += [f"<h4 class='regime'>{_e(regime)}</h4><p class='note'>{_e(regimes[regime])}</p>",
                      _table(["system", "size", "result", "budget", "source", "note"], table_rows, "reported-row", {2})]
    parts.append("<h3>Sources</h3><ul>" + "".join(
        f'<li><b>{_e(tag)}</b>: <a href="{_e(s["url"])}">{_e(s["title"])}</a></li>' for tag, s in sources.items())
        + "</ul></section>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Subgoal leaderboard</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def build_site(runs_dir: Path, out_dir: Path, *, reported_path: Path = REPORTED_PATH, n_boot: int = 1000) -> Site:
    """Write `<out>/leaderboard.md` and `<out>/index.html` for every run under `runs_dir`."""
    skipped: list[str] = []
    reports = collect_reports(runs_dir, n_boot=n_boot, skipped=skipped)
    reported = load_reported(reported_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvalError(f"--out {out_dir} is an existing file; give a directory for index.html and leaderboard.md")
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "leaderboard.md", out_dir / "index.html"
    md.write_text(render_markdown(reports, reported))
    page.write_text(render_html(reports, reported))
    return Site(md, page, len(reports), len(reported["results"]), skipped)
