"""A Lean-verified reward for verl (RL at cluster scale on Ray), backed by this project's verifier.

verl calls a custom reward function by name (`custom_reward_function.path/name`): `compute_score` (one
sample; verl's `naive` reward manager), `compute_score_batch` (all samples of a step at once; the `batch`
manager, so every REPL or the remote server stays busy) and `compute_score_async` (verl's async reward loop).
The reward is GRPO's: 1.0 for a PROVED verdict, else 0.0, with the verdict's status in the extra info.
The verifier is made once per process from the config: `SUBGOAL_LEAN__REMOTE_URL=http://lean-box:8000` sends
every proof to `subgoal lean serve` on CPU nodes (the usual setup: reward workers hold no REPLs), otherwise a
local REPL pool. Rows come from `prepare_dataset`: `ground_truth` is the formal statement, `extra_info` holds
the header and whether the prompt left a code block open (how to read the completion).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from data.problem import Problem
from lean_env.verdict import Status, Verdict
from prover.prompts.extract import candidate_proof

_verifier: Any = None
_lock = threading.Lock()


def use_verifier(verifier: Any) -> Any:
    """Set the verifier the reward uses (a `Verifier` or `RemoteVerifier`; None: make one from the config when
    first needed); returns the one it replaces."""
    global _verifier
    with _lock:
        previous, _verifier = _verifier, verifier
    return previous


def verifier() -> Any:
    global _verifier
    with _lock:
        if _verifier is None:
            from data.config import load_config
            from lean_env import make_verifier

            _verifier = make_verifier(load_config().lean)
        return _verifier


def _candidate(solution_str: str, ground_truth: str, extra_info: dict | None) -> tuple[Problem, str | None]:
    info = extra_info or {}
    problem = Problem(str(info.get("name") or "verl_problem"), ground_truth, str(info.get("header") or ""))
    # the one extraction search and GRPO use: the reward judges the candidate eval would verify
    return problem, candidate_proof(solution_str, problem, bool(info.get("continues_code", False)))


def _score(verdict: Verdict | None) -> dict[str, Any]:
    proved = verdict is not None and verdict.status is Status.PROVED
    return {"score": 1.0 if proved else 0.0, "proved": proved, "extracted": verdict is not None,
            "status": verdict.status.value if verdict is not None else "no_proof"}


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **_: Any) -> dict[str, Any]:
    problem, proof = _candidate(solution_str, ground_truth, extra_info)
    return _score(verifier().verify(problem, proof) if proof is not None else None)


def compute_score_batch(data_sources: list[str], solution_strs: list[str], ground_truths: list[str],
                        extra_infos: list[dict | None] | None = None, **_: Any) -> list[dict[str, Any]]:
    """Every sample of the batch in flight at once; results in order."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)  # verl passes arrays
    cands = [_candidate(s, g, i) for s, g, i in zip(solution_strs, ground_truths, infos, strict=True)]
    todo = [(k, p, proof) for k, (p, proof) in enumerate(cands) if proof is not None]
    verdicts: dict[int, Verdict] = {}
    if todo:
        for (k, _, _), v in zip(todo, verifier().verify_many([(p, proof) for _, p, proof in todo]), strict=True):
            verdicts[k] = v
    return [_score(verdicts.get(k)) for k in range(len(cands))]


async def compute_score_async(data_source: str, solution_str: str, ground_truth: str,
                              extra_info: dict | None = None, **_: Any) -> dict[str, Any]:
    problem, proof = _candidate(solution_str, ground_truth, extra_info)
    if proof is None:
        return _score(None)
    return _score(await asyncio.wrap_future(verifier().submit(problem, proof)))


def prepare_dataset(problems: list[Any], out: str | Path, prompt_kind: str = "cot", prompts_path: str | None = None,
                    data_source: str = "subgoal") -> int:
    """Write verl's RL parquet for `problems`: chat prompt, rule-style ground truth, extra info. Returns rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prover.prompts import load_prompts

    prompts = load_prompts(prompts_path)
    template = prompts[prompt_kind]
    rows = [{"data_source": data_source,
             "prompt": [{"role": "user", "content": prompts.render(prompt_kind, p)}],
             "ability": "lean4",
             "reward_model": {"style": "rule", "ground_truth": p.formal_statement},
             "extra_info": {"name": p.name, "header": getattr(p, "header", "") or "", "index": i,
                            "continues_code": template.continues_code}}
            for i, p in enumerate(problems)]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(out))
    return len(rows)


if __name__ != "prover.train.verl_reward":  # verl loads this file by path: share the package module's verifier
    from prover.train import verl_reward as _package

    compute_score, compute_score_batch = _package.compute_score, _package.compute_score_batch
    compute_score_async, use_verifier = _package.compute_score_async, _package.use_verifier
