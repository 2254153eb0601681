"""Natural-language problems -> filtered Lean 4 statements (a problem set in the standard JSONL).

Pipeline per informal problem: `samples` candidate statements from any backend (prompt template as data) ->
extract the statement -> Lean filters (compiles with `sorry`; hypotheses not inconsistent; negation not
provable; not trivial) -> optional model-graded faithfulness -> best candidate -> dedup across the set (normalized
statement) -> optional decontamination against the benchmarks. Every candidate that is dropped is reported
with its reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoformalize.filters import NEGATION_TACTICS, QUICK_TACTICS, compile_check, consistency_checks
from autoformalize.statement import extract_statement, rename, safe_name
from data.decontam import Decontaminator, normalize_statement
from data.errors import DataError
from data.loaders import iter_jsonl
from data.problem import Problem
from lean_env.checker import Checker
from prover.generate import Backend, SamplingParams, format_chat
from prover.prompts import DEFAULT_HEADER, Template, load_prompts

DEFAULT_PROMPTS = Path(__file__).with_name("prompts.toml")
_TEXT_KEYS = ("informal_statement", "problem", "statement", "question", "text")


@dataclass
class InformalProblem:
    id: str
    text: str
    header: str = DEFAULT_HEADER
    informal_proof: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FormalizeConfig:
    samples: int = 4  # candidates per problem
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int | None = 0
    tactics: tuple[str, ...] = QUICK_TACTICS
    negation_tactics: tuple[str, ...] = NEGATION_TACTICS
    faithfulness: bool = False  # model-graded faithfulness (extra generation per surviving candidate)
    min_faithfulness: float = 0.5  # in [0, 1] ((N - 1) / 4 of the `Score: N` line)
    prompts: str | None = None  # TOML overriding autoformalize/prompts.toml


@dataclass
class FormalizeReport:
    informal: int = 0
    candidates: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> candidates dropped for it
    problems_without_statement: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)  # one per dropped candidate: id, k, reason, detail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_informal(path: str | Path, header: str | None = None) -> list[InformalProblem]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"informal problem file {path} does not exist")
    out, seen = [], set()
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        text = next((rec[k] for k in _TEXT_KEYS if isinstance(rec.get(k), str) and rec[k].strip()), None)
        if text is None:
            raise DataError(f"{path}:{lineno}: no problem text (one of the fields {', '.join(_TEXT_KEYS)})")
        pid = str(rec.get("name") or rec.get("id") or f"{path.stem}_{lineno}")
        if pid in seen:
            raise DataError(f"{path}:{lineno}: duplicate problem id {pid!r}")
        seen.add(pid)
        used = {"name", "id", "header", "informal_proof", *_TEXT_KEYS}
        out.append(InformalProblem(pid, text.strip(), header or rec.get("header") or DEFAULT_HEADER,
                                   rec.get("informal_proof"), {k: v for k, v in rec.items() if k not in used}))
    if not out:
        raise DataError(f"{path} holds no problems")
    return out


def load_templates(path: str | Path | None = None) -> dict[str, Template]:
    """`formalize` and `faithfulness` templates (autoformalize/prompts.toml), overridable like the prover's."""
    return load_prompts(path, defaults=DEFAULT_PROMPTS).templates


def _render(template: Template, backend: Backend, **fields: str) -> str:
    text = template.render(**fields)
    return format_chat(backend, text) if template.chat else text


def _score(text: str) -> float | None:
    m = re.findall(r"Score:\s*([1-5])", text)
    return (int(m[-1]) - 1) / 4 if m else None


def formalize(
    informal: list[InformalProblem],
    backend: Backend,
    verifier: Checker,
    cfg: FormalizeConfig,
    grader: Backend | None = None,
    decontaminator: Decontaminator | None = None,
) -> tuple[list[Problem], FormalizeReport]:
    """Formalize `informal` with `backend`, filter with `verifier` (and `grader`, default the same backend)."""
    templates = load_templates(cfg.prompts)
    report = FormalizeReport(informal=len(informal))

    def drop(ip: InformalProblem, k: int, reason: str, detail: str = "") -> None:
        report.dropped[reason] = report.dropped.get(reason, 0) + 1
        report.items.append({"id": ip.id, "candidate": k, "reason": reason, "detail": detail})

    prompts = [_render(templates["formalize"], backend, informal=ip.text, header=ip.header) for ip in informal]
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                            stop=templates["formalize"].stop, logprobs=False)
    completions = backend.generate(prompts, params, n=cfg.samples)

    # Candidates: (informal problem, sample index, Problem); duplicates within a problem are dropped early.
    cands: list[tuple[InformalProblem, int, Problem]] = []
    for ip, outs in zip(informal, completions, strict=True):
        name, seen = safe_name(ip.id), set()
        for k, c in enumerate(outs):
            report.candidates += 1
            statement = extract_statement(c.text)
            if statement is None:
                drop(ip, k, "no_statement", c.text[:200])
                continue
            statement = rename(statement, name)
            norm = normalize_statement(statement)
            if norm in seen:
                drop(ip, k, "duplicate_candidate")
                continue
            seen.add(norm)
            cands.append((ip, k, Problem(name=name, formal_statement=statement, header=ip.header,
                                         informal_statement=ip.text, informal_proof=ip.informal_proof,
                                         source="autoformalize")))

    outcomes = compile_check([p for _, _, p in cands], verifier)
    survivors = []
    for (ip, k, p), o in zip(cands, outcomes, strict=True):
        if o.dropped:
            drop(ip, k, o.dropped, o.detail)
        else:
            survivors.append((ip, k, p, o.passed))
    outcomes = consistency_checks([p for _, _, p, _ in survivors], verifier, cfg.tactics, cfg.negation_tactics)
    checked = []
    for (ip, k, p, passed), o in zip(survivors, outcomes, strict=True):
        if o.dropped:
            drop(ip, k, o.dropped, o.detail)
        else:
            checked.append((ip, k, p, passed + o.passed, {}))

    if cfg.faithfulness and checked:
        grader = grader or backend
        t = templates["faithfulness"]
        gprompts = [_render(t, grader, informal=ip.text, statement=p.formal_statement) for ip, _, p, _, _ in checked]
        gparams = SamplingParams(temperature=0.0, max_tokens=cfg.max_tokens, stop=t.stop, logprobs=False)
        graded = []
        for cand, outs in zip(checked, grader.generate(gprompts, gparams, n=1), strict=True):
            ip, k, p, passed, scores = cand
            score = _score(outs[0].text)
            scores["faithfulness"] = score
            if score is None or score < cfg.min_faithfulness:
                drop(ip, k, "unfaithful", f"score {score}")
            else:
                graded.append((ip, k, p, passed + ["faithful"], scores))
        checked = graded

    # Best candidate per informal problem (highest faithfulness, else the first sample), then set-wide dedup.
    best: dict[str, tuple] = {}
    for cand in checked:
        ip, k = cand[0], cand[1]
        cur = best.get(ip.id)
        if cur is None or (cand[4].get("faithfulness") or 0) > (cur[4].get("faithfulness") or 0):
            if cur is not None:
                drop(cur[0], cur[1], "not_best_candidate")
            best[ip.id] = cand
        else:
            drop(ip, k, "not_best_candidate")
    kept: list[Problem] = []
    seen_statements: dict[str, str] = {}
    for ip in informal:
        if ip.id not in best:
            report.problems_without_statement += 1
            continue
        _, k, p, passed, scores = best[ip.id]
        norm = normalize_statement(p.formal_statement)
        if norm in seen_statements:
            drop(ip, k, "duplicate", f"same statement as {seen_statements[norm]}")
            report.problems_without_statement += 1
            continue
        if decontaminator is not None and (hit := decontaminator.check(p.formal_statement)) is not None:
            drop(ip, k, "contaminated", f"{hit.reason} match with {hit.benchmark}/{hit.name} ({hit.score})")
            report.problems_without_statement += 1
            continue
        seen_statements[norm] = ip.id
        passed = passed + (["unique"] + (["decontaminated"] if decontaminator is not None else []))
        p.extra = {**ip.extra, "informal_id": ip.id, "model": getattr(backend, "model_id", ""), "candidate": k,
                   "filters_passed": passed, "scores": scores}
        kept.append(p)
    report.kept = len(kept)
    return kept, report


def write_problems(problems: list[Problem], path: str | Path) -> None:
    """JSONL, written to a temporary file and renamed: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in problems), encoding="utf-8")
    tmp.replace(path)


def report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".report.json")


def summarize(report: FormalizeReport) -> list[tuple[str, int]]:
    return [("informal problems", report.informal), ("candidates", report.candidates),
            ("kept statements", report.kept), *sorted(Counter(report.dropped).items(), key=lambda kv: -kv[1])]
