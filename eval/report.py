"""A run's report: pass@k per set and split with intervals, verdict counts, cost; JSON and a terminal table.

The run store is the source of truth: a report is recomputed from the recorded attempts (and the run's
recorded config) at any time, so `report.json` can always be rebuilt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval.errors import EvalError
from eval.metrics import Cost, count_attempts, set_report

REPORT_FILE = "report.json"
STORE_FILE = "store.sqlite"
HEADLINE_KS = (1, 8, 32, 128, 1024, 8192)


def build_report(attempts: Sequence[Any], run: dict[str, Any], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything the leaderboard and the terminal show about one run, as plain JSON-able data.

    `attempts` are `data.store.Attempt`s (duck-typed: problem, split, status, tokens, timings);
    `run` is the config recorded when the run started (model, strategy, budget, versions, problems, ...).
    """
    planned = planned_problems(run)
    names = planned if isinstance(planned, list) else []  # a count (older prove runs) names no one to add
    counts = count_attempts(((a.problem, a.split, a.status) for a in attempts), names)
    samples = int(run.get("samples") or 0)
    missing = [p.name for p in counts if p.n == 0]
    n_planned = len(counts) if isinstance(planned, list) else max(planned, len(counts))
    short = [p.name for p in counts if samples and 0 < p.n < samples]
    splits = sorted({p.split for p in counts if p.n > 0})
    cost = Cost()
    for a in attempts:
        cost.add(a.prompt_tokens, a.completion_tokens, a.timings)
    overall = set_report(counts, n_boot=n_boot, seed=seed)
    # The machine's failures (lean_env.errors.machine_fault) count as unproved in pass@k, like any failure, but
    # apart here: they say nothing of the prover, and a resumed run retries them.
    infra = sum(1 for a in attempts if (a.verdict or {}).get("infra"))
    return {
        "run": run,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "problems_planned": n_planned,
        "complete": not missing and not short and len(counts) >= n_planned and not infra,
        "infra_failures": infra,
        "missing_problems": missing,
        "incomplete_problems": short,
        "overall": overall.to_dict(),
        "splits": {s: set_report([p for p in counts if p.split == s and p.n > 0], n_boot=n_boot, seed=seed).to_dict()
                   for s in splits} if len(splits) > 1 else {},
        "statuses": dict(Counter(a.status for a in attempts)),
        "solved_problems": sorted(p.name for p in counts if p.c > 0),
        "cost": cost.to_dict(),
        "cost_per_solved": cost.per(overall.solved),
    }


def planned_problems(run: dict[str, Any]) -> list[str] | int:
    """The run's planned problems: their names (eval runs record them), or only their number (older
    `subgoal prove` batch runs recorded `len(problems)`)."""
    planned = run.get("problems") or []
    if isinstance(planned, bool) or not isinstance(planned, int | list):
        raise EvalError(f"run {run.get('name', '?')}: recorded `problems` is {type(planned).__name__}, "
                        "expected a list of names or a count")
    return [str(name) for name in planned] if isinstance(planned, list) else planned


def write_report(report: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / REPORT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=False, default=str))
    tmp.replace(path)  # atomic: a reader never sees half a report
    return path


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[Any]]:
    """(run config, attempts) of the run stored in `run_dir`; one clear error when it is not a run."""
    from data.errors import DataError
    from data.store import RunStore

    run_dir = Path(run_dir)
    if not (run_dir / STORE_FILE).is_file():
        raise EvalError(f"{run_dir} holds no run store ({STORE_FILE}); run `subgoal eval ... --out {run_dir}` first")
    try:
        with RunStore(run_dir, create=False) as store:
            runs = store.runs()
            if not runs:
                raise EvalError(f"{run_dir / STORE_FILE} has no run recorded")
            info = runs[-1]  # one run per directory: `--out runs/NAME` names both
            config = dict(store.get_meta(info.id, "eval_config") or info.config)  # eval.harness.CONFIG_META
            config.setdefault("problem_set", config.get("target"))  # a `subgoal prove` batch run names its TARGET
            run = {**config, "name": info.name, "created": info.created,
                   "versions": {**info.versions, **(config.get("versions") or {})}}
            return run, store.attempts(info.id)
    except DataError as e:
        raise EvalError(str(e)) from None
    except (ValueError, TypeError, AttributeError) as e:  # rows whose JSON is not what a run store writes
        raise EvalError(f"{run_dir / STORE_FILE}: corrupt run store ({e})") from None


def report_for_dir(run_dir: Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    run, attempts = load_run(run_dir)
    return build_report(attempts, run, n_boot=n_boot, seed=seed)


def headline_ks(report: dict[str, Any]) -> list[int]:
    ks = [int(k) for k in report["overall"]["pass_at_k"]]
    if not ks:
        return []
    shown = [k for k in HEADLINE_KS if k in ks]
    return shown + ([max(ks)] if max(ks) not in shown else [])


def render_table(report: dict[str, Any]):
    """A rich Table of one run: pass@k (with 95% interval) per split, then cost."""
    from rich.table import Table

    run = report["run"]
    title = f"{run.get('name', '')}: {run.get('problem_set', '')} | {run.get('model', '')} | {run.get('strategy', '')}"
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    table.add_column("problems", justify="right")
    table.add_column("solved", justify="right")
    ks = headline_ks(report)
    for k in ks:
        table.add_column(f"pass@{k}", justify="right")
    groups = [("all", report["overall"]), *sorted(report["splits"].items())]
    for name, group in groups:
        cells = []
        for k in ks:
            p = group["pass_at_k"].get(str(k))
            cells.append(f"{100 * p['value']:.1f}% [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]" if p else "-")
        table.add_row(name, str(group["problems"]), str(group["solved"]), *cells)
    cost = report["cost"]
    per = report.get("cost_per_solved") or {}
    table.caption = (
        f"attempts {cost['attempts']} | tokens {cost['tokens']:,} | Lean CPU {cost['lean_cpu_s']:.1f}s"
        # Attempts run concurrently: their own wall and generation times overlap, so their sums are no clock.
        + (f" | this run's wall {report['run_wall_s']:.1f}s" if report.get("run_wall_s") is not None else "")
        + f" | summed over attempts: GPU {cost['gpu_s']:.1f}s, wall {cost['wall_s']:.1f}s"
        + (f" | planner tokens {cost['planner_tokens']:,}, {cost['planner_gen_s']:.1f}s"
           if cost.get("planner_tokens") else "")
        + (f" | per solved: {per['tokens']:,.0f} tokens, {per['lean_cpu_s']:.1f}s Lean CPU" if per else "")
        + (f" | {report['infra_failures']} infrastructure failures (re-run to retry)"
           if report.get("infra_failures") else "")
        + ("" if report["complete"] else " | INCOMPLETE run")
    )
    return table
