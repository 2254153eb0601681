"""Expert iteration (DeepSeek-Prover V1/V1.5/V2 stage 1): rounds of prove -> collect verified proofs -> build
the SFT dataset (every verified proof so far, deduplicated, decontaminated) -> SFT from the current checkpoint ->
prove again with the new one.

Everything lives under one output directory: `store.sqlite` (run `round-R` holds round R's attempts; run
`iterate` holds the loop's state: current checkpoint and per-round numbers, via `set_meta`), and
`round-R/dataset`, `round-R/model` (an HF checkpoint). Rerunning the same command resumes: finished rounds are
skipped, an interrupted prove phase continues where the store stops, an interrupted SFT resumes from its last
checkpoint; a rerun with other settings (strategy, seed, sampling, attempts, SFT settings) is refused. The prove
phase is the same runner as `subgoal prove` and `subgoal eval` (`prover.runner`). With `curriculum="subgoals"`
(DeepSeek-Prover-V2), the lemmas of round R's decompositions, both forms, proved or not, join round R+1's
problem pool; each round records what it added (`curriculum` meta and `round-R/curriculum.jsonl`), so a resumed
loop rebuilds the same pool.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data.decontam import normalize_statement
from data.manifest import Manifest, check_resume, content_id, make_manifest, problems_id
from data.problem import Problem
from data.sft_dataset import NoExamples
from data.store import store_path
from prover.errors import ProverError
from prover.generate.base import derive_seed
from prover.train.curriculum import subgoal_problems

if TYPE_CHECKING:
    from data.config import Config
    from data.store import RunStore
    from lean_env.checker import Checker

LOOP_RUN = "iterate"
CURRICULA = ("none", "subgoals")


@dataclass
class IterateConfig:
    problems: str
    model: str
    rounds: int
    out: str
    attempts: int = 8  # per problem per round
    strategy: str = "sample"
    max_tokens: int | None = None  # per generation; None: by prompt mode (prover.recipe.MAX_TOKENS)
    temperature: float = 1.0
    top_p: float = 0.95
    stop_at_first: bool = False
    seed: int = 0
    sft_steps: int | None = None
    sft_epochs: float = 1.0
    lr: float = 1e-5
    batch_size: int = 4
    max_length: int = 2048
    device: str = "auto"
    decontaminate: bool = True
    tokenizer: str | None = None
    curriculum: str = "none"  # "subgoals": decomposition lemmas join the next round's pool (needs decompose)


def iterate_manifest(icfg: IterateConfig, problems: list[Problem]) -> Manifest:
    """What a resumed loop must match: every setting but `rounds` (a finished loop may be extended), the seed,
    the starting weights and the problems by content."""
    settings = {k: v for k, v in asdict(icfg).items() if k not in ("out", "rounds", "device", "seed")}
    inputs = {"--model": content_id(icfg.model, weights_only=True),
              "--problems": problems_id(problems)}
    return make_manifest("iterate", settings, {"seed": icfg.seed}, inputs)


def round_name(r: int) -> str:
    return f"round-{r}"


def run_iterations(icfg: IterateConfig, config: Config, verifier: Checker | None = None,
                   progress: bool = True) -> list[dict]:
    """Run (or resume) the rounds; returns one summary per finished round."""
    from data import load_problems
    from data.store import RunStore, check_run_directory, run_directory

    if icfg.curriculum not in CURRICULA:
        raise ProverError(f"unknown curriculum {icfg.curriculum!r} (expected one of {', '.join(CURRICULA)})")
    if icfg.curriculum == "subgoals" and icfg.strategy != "decompose":
        raise ProverError("--curriculum subgoals needs --strategy decompose (the lemmas come from its traces)")
    out = check_run_directory(icfg.out)
    problems = load_problems(icfg.problems, config)
    # before Lean or a model starts: a changed loop never continues an earlier one's rounds
    check_resume(out, iterate_manifest(icfg, problems), resuming=store_path(out).is_file(), what=("a run store",))
    run_directory(out)
    own_verifier = verifier is None
    if own_verifier:
        from lean_env import make_verifier

        verifier = make_verifier(config.lean)
    try:
        with RunStore(out) as store:
            loop = store.start_run(LOOP_RUN, asdict(icfg))
            summaries: list[dict] = store.get_meta(loop, "rounds", [])
            current = store.get_meta(loop, "checkpoint", icfg.model)
            pool, seen = list(problems), {normalize_statement(p.formal_statement) for p in problems}
            for q in range(len(summaries)):  # resuming: the pool the finished rounds built
                added = [Problem.from_dict(d) for d in store.get_meta(store.run_id(round_name(q)), "curriculum", [])]
                pool += added
                seen |= {normalize_statement(p.formal_statement) for p in added}
            for r in range(len(summaries), icfg.rounds):
                summary = _round(r, icfg, config, store, pool, current, verifier, progress)
                if icfg.curriculum == "subgoals":
                    summary["curriculum"] = _grow_pool(r, icfg, store, pool, seen)
                summaries.append(summary)
                current = summary["checkpoint"] or current
                store.set_meta(store.run_id(round_name(r)), "round", summary)
                store.set_meta(loop, "rounds", summaries)
                store.set_meta(loop, "checkpoint", current)
            return summaries
    finally:
        if own_verifier:
            verifier.close()


def _grow_pool(r: int, icfg: IterateConfig, store: RunStore, pool: list[Problem], seen: set[str]) -> dict[str, int]:
    """Round r's decomposition lemmas into the pool (in place); recorded in the round's meta and a JSONL file."""
    run_id = store.run_id(round_name(r))
    added = subgoal_problems(store.attempts(run_id), {p.name: p for p in pool}, seen)
    pool += added
    store.set_meta(run_id, "curriculum", [p.to_dict() for p in added])
    path = Path(icfg.out) / round_name(r) / "curriculum.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in added))
    by = Counter(f"{p.extra['form']}:{p.extra['lemma_status']}" for p in added)
    return {"added": len(added), "pool": len(pool), **dict(sorted(by.items()))}


def _round(r: int, icfg: IterateConfig, config: Config, store: RunStore, problems: list[Problem], model: str,
           verifier: Checker, progress: bool) -> dict:
    from prover.recipe import ProveRecipe, open_run
    from prover.runner import LocalExecutor, WorkUnit, run_units
    from prover.search.options import with_default_samples
    from prover.train.examples import build_dataset
    from prover.train.sft import SFTConfig, train_sft

    t0 = time.perf_counter()
    out = Path(icfg.out) / round_name(r)

    # 1. prove with the current model (resumes inside the round's run)
    recipe = ProveRecipe(
        strategy=icfg.strategy,
        budget=with_default_samples(icfg.strategy, {}),
        model_settings=config.model.model_copy(update={"model": model}),
        planner_settings=config.planner,  # a separate planner stays the same model every round
        lean_settings=config.lean,
        seed=derive_seed(icfg.seed, "prove", r),
        sampling={"temperature": icfg.temperature, "top_p": icfg.top_p,
                  **({} if icfg.max_tokens is None else {"max_tokens": icfg.max_tokens})},
        model_id=model,
    )
    settings = {**recipe.settings(), "problem_set": icfg.problems, "samples": icfg.attempts,
                "stop_at_first": icfg.stop_at_first}
    run_id, _ = open_run(store, round_name(r), settings, f"{icfg.out} ({round_name(r)})")
    executor = LocalExecutor(recipe, checker=verifier)  # the model is loaded only if attempts are left
    try:
        run_units((WorkUnit(p, i) for i in range(icfg.attempts) for p in problems), executor, store, run_id,
                  stop_at_first=icfg.stop_at_first)
    finally:
        executor.close()  # the backend, the checker threads, tree search's sessions; the verifier is ours
    prove_s = time.perf_counter() - t0

    # 2. what is new this round
    proved_now = {a.problem for a in store.attempts(run_id, status="proved")}
    proved_before: set[str] = set()
    for q in range(r):
        proved_before |= {a.problem for a in store.attempts(store.run_id(round_name(q)), status="proved")}

    # 3. dataset: every verified proof of rounds 0..r
    ds_dir = out / "dataset"
    shutil.rmtree(ds_dir, ignore_errors=True)
    dataset_size, sft_loss, checkpoint = 0, None, None
    try:
        report = build_dataset([store.path], ds_dir, config, problems=icfg.problems,
                               decontaminate=icfg.decontaminate, runs=[round_name(q) for q in range(r + 1)])
        dataset_size = report.examples_out
    except NoExamples:
        pass  # nothing proved yet: this round trains nothing
    # 4. SFT from the current checkpoint (skipped when nothing was proved yet)
    if dataset_size:
        res = train_sft(SFTConfig(model=model, data=str(ds_dir), out=str(out / "model"), tokenizer=icfg.tokenizer,
                                  lr=icfg.lr, max_steps=icfg.sft_steps, epochs=icfg.sft_epochs,
                                  micro_batch_size=icfg.batch_size, max_length=icfg.max_length,
                                  device=icfg.device, seed=derive_seed(icfg.seed, "sft", r)), progress=progress)
        sft_loss, checkpoint = res.final_loss, res.out
    return {
        "round": r,
        "model": model,
        "proved": len(proved_now),
        "new_proofs": len(proved_now - proved_before),
        "total_proved": len(proved_now | proved_before),
        "attempts": len(store.attempts(run_id)),
        "dataset_size": dataset_size,
        "sft_loss": sft_loss,
        "checkpoint": checkpoint,
        "prove_s": round(prove_s, 2),
        "time_s": round(time.perf_counter() - t0, 2),
    }
