"""`repair`: Lean-feedback repair. Sample a proof; while it fails and rounds are left, send it back with Lean's
error messages (the `repair` template) and check the model's fix. Chains start over from a fresh sample until
the budget is spent; each chain has at most `rounds` repairs."""

from __future__ import annotations

from typing import Any

from data.problem import Problem
from lean_env.verdict import Verdict
from prover.prompts.extract import lean_errors
from prover.search.core import BudgetExhausted, Search, no_candidate
from prover.search.options import RepairOptions
from prover.search.sample import candidate_score


async def run_repair(search: Search) -> tuple[str, Verdict, dict[str, Any]]:
    opts = RepairOptions.read(search.options)
    mode, rounds = opts.mode, opts.rounds
    chains: list[list[dict[str, Any]]] = []
    best: tuple[float, str, Verdict] | None = None
    try:
        while True:
            chain: list[dict[str, Any]] = []
            chains.append(chain)
            text, verdict = await _step(search, mode, search.render(mode), chain)
            for round_ in range(rounds + 1):
                if text and verdict.proved:
                    return text, verdict, {"mode": mode, "rounds": rounds, "chains": chains}
                if text and (best is None or candidate_score(verdict) > best[0]):
                    best = (candidate_score(verdict), text, verdict)
                if round_ == rounds:
                    break  # this chain's repairs are spent: start over from a fresh sample
                prompt = search.render("repair", proof=chain[-1]["text"] or "(no proof)", errors=chain[-1]["feedback"])
                text, verdict = await _step(search, "repair", prompt, chain)
    except BudgetExhausted:
        pass
    trace = {"mode": mode, "rounds": rounds, "chains": [c for c in chains if c]}
    if best is not None:
        return best[1], best[2], trace
    return "", no_candidate("no sample produced Lean code"), trace


async def _step(search: Search, kind: str, prompt: str, chain: list[dict[str, Any]]) -> tuple[str, Verdict]:
    completion = (await search.generate([prompt], 1, kind))[0][0]
    text = search.extract(kind, completion.text) or ""
    verdict = await search.verify(text) if text else no_candidate("no Lean code in the completion")
    # The candidate and the feedback exactly as a repair prompt shows them: the SFT builder turns a failed step
    # followed by a proved repair into a `repair` example.
    chain.append({"kind": kind, "status": verdict.status.value, "tokens": completion.completion_tokens,
                  "errors": [m.data for m in verdict.errors[:3]],
                  "text": _without_header(text, search.problem) if text else "",
                  "feedback": lean_errors(verdict.messages) if text else "no Lean code was produced"})
    search.event("candidate", index=len(chain) - 1, status=verdict.status.value, text=text or completion.text,
                 errors=[m.data for m in verdict.errors[:3]] or verdict.reasons[:3], round=len(chain) - 1)
    if text:
        search.offer(text, verdict, "proof" if verdict.proved else "candidate", candidate_score(verdict))
    return text, verdict


def _without_header(text: str, problem: Problem) -> str:
    header = problem.header or ""
    return text[len(header):] if header and text.startswith(header) else text
