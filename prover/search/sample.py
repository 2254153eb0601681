"""`sample`: whole-proof sampling. Draw proofs in rounds of `batch` samples until one verifies or the budget
(samples / tokens / Lean calls / time) is spent; with `stop_at_first=False` every sample is drawn and checked
(pass@k inside one attempt). Prompt mode: `complete` (non-CoT, continues the code block) or `cot`."""

from __future__ import annotations

from typing import Any

from lean_env.verdict import Verdict
from prover.search.core import BudgetExhausted, Search, no_candidate
from prover.search.options import SampleOptions


def candidate_score(verdict: Verdict) -> float:
    return 100.0 if verdict.proved else -len(verdict.errors) - (10 if verdict.status.value == "unsound" else 0)


async def run_sample(search: Search) -> tuple[str, Verdict, dict[str, Any]]:
    opts = SampleOptions.read(search.options)
    mode, batch, stop_at_first = opts.mode, opts.batch, opts.stop_at_first
    prompt = search.render(mode)
    samples: list[dict[str, Any]] = []
    found: tuple[str, Verdict] | None = None
    best: tuple[float, str, Verdict] | None = None
    try:
        while found is None or not stop_at_first:
            left = search.budget.remaining_samples()  # this round takes every sample left: it is the last
            completions = (await search.generate([prompt], batch, mode, last=left is not None and left <= batch))[0]
            if search.budget.exhausted():  # tokens or time spent (they only grow): these were its last completions
                search.done_generating()
            texts = await search.extract_many(mode, [c.text for c in completions])
            usable = [t for t in texts if t]
            verdicts = iter(await search.verify_many(usable) if usable else [])
            for c, text in zip(completions, texts, strict=True):
                verdict = next(verdicts, None) if text else None
                verdict = verdict or no_candidate("no Lean code in the completion" if not text else "not checked")
                samples.append({"status": verdict.status.value, "tokens": c.completion_tokens,
                                "finish": c.finish_reason, "logprob": round(c.logprob, 3)})
                search.event("candidate", index=len(samples) - 1, status=verdict.status.value, text=text or c.text,
                             errors=[m.data for m in verdict.errors[:3]] or verdict.reasons[:3])
                if text:
                    score = candidate_score(verdict)
                    search.offer(text, verdict, "proof" if verdict.proved else "candidate", score)
                    if best is None or score > best[0]:
                        best = (score, text, verdict)
                if verdict.proved and found is None:
                    found = (text, verdict)
    except BudgetExhausted:
        pass
    trace = {"mode": mode, "samples": samples}
    if found is not None:
        return found[0], found[1], trace
    if best is not None:
        return best[1], best[2], trace
    return "", no_candidate("no sample produced Lean code"), trace
