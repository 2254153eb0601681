"""`decompose`: recursive subgoal decomposition, in the manner of DeepSeek-Prover-V2.

1. sketch: the model writes a proof whose steps are `have ... := by sorry` (the `sketch` template), or the
   user gives one (`sketch=` option: a `.lean` theorem with sorries);
2. Lean checks that the sketch compiles with its sorries and returns each sorry's goal;
3. each goal becomes a standalone lemma (`lean_env.decompose`: hypotheses as binders);
4. each lemma is proved by whole-proof sampling with its own budget, and, failing that and while depth is
   left, decomposed again (recursively); a sketch's lemmas are proved concurrently (one task each, each
   within its own budget), all of them even when one fails, so the best partial sketch has every lemma that
   could be proved;
5. the lemma proofs are substituted back into the sketch and the whole proof is checked by the Verifier.
The decomposition tree (sketches, lemmas, their proofs and verdicts) is the attempt's trace.
"""

from __future__ import annotations

import asyncio
from typing import Any

from data.problem import Problem
from lean_env.decompose import decompose, have_steps, substitute, tactic_body
from lean_env.verdict import Verdict
from prover.search.budget import Budget
from prover.search.core import BudgetExhausted, Search, no_candidate
from prover.search.options import DecomposeOptions
from prover.search.sample import run_sample


async def run_decompose(search: Search) -> tuple[str, Verdict, dict[str, Any]]:
    sketches: list[dict[str, Any]] = []
    trace: dict[str, Any] = {"problem": search.problem.name, "statement": search.problem.formal_statement,
                             "sketches": sketches}
    opts = DecomposeOptions.read(search.options)
    given = search.options.pop("sketch", None)  # the lemmas' own searches write their sketches
    best: tuple[str, Verdict] | None = None
    try:
        while True:
            plan = ""  # the planner's whole answer (analysis + sketch): a cold-start example's chain of thought
            if given is not None:
                sketch, given_now = given, True
                given = None
            else:
                completion = (await search.generate([search.render("sketch")], 1, "sketch"))[0][0]
                sketch, given_now, plan = search.extract("sketch", completion.text) or "", False, completion.text
            node: dict[str, Any] = {"sketch": sketch, "plan": plan, "steps": have_steps(sketch) if sketch else [],
                                    "subgoals": []}
            sketches.append(node)
            text, verdict = await _try_sketch(search, sketch, node)
            if text is not None and verdict is not None:
                if verdict.proved:
                    return text, verdict, trace
                best = best or (text, verdict)
            if given_now and node.get("status") not in ("compiled",):
                break  # the user's sketch does not compile: nothing to retry
            if given_now and opts.sketch_only:
                break
    except BudgetExhausted:
        pass
    if best is not None:
        return best[0], best[1], trace
    return "", no_candidate("no sketch compiled and decomposed into provable lemmas"), trace


async def _try_sketch(search: Search, sketch: str, node: dict[str, Any]) -> tuple[str | None, Verdict | None]:
    """Check one sketch, prove its lemmas, recompose. Returns the recomposed text and its verdict (or Nones)."""
    if not sketch:
        node["status"] = "no_code"
        return None, None
    verdict = await search.verify(sketch)
    node["verdict"] = verdict.status.value
    if verdict.proved:
        node["status"] = "proved_outright"
        search.offer(sketch, verdict, "proof", 100.0)
        return sketch, verdict
    if verdict.errors or not verdict.sorries:
        node["status"] = "does_not_compile" if verdict.errors else "no_sorry"
        node["errors"] = [m.data for m in verdict.errors[:5]] or verdict.reasons[:5]
        search.event("sketch", text=sketch, ok=False, errors=node["errors"])
        return None, None
    try:
        subgoals = decompose(sketch, verdict.sorries, search.problem.name.replace(".", "_"))
    except ValueError as e:
        node["status"] = "unmatched_sorries"
        node["errors"] = [str(e)]
        return None, None
    node["status"] = "compiled"
    lemmas = [(sub, k) for sub in subgoals for k in range(len(sub.lemma_names))]
    search.event("sketch", text=sketch, ok=True,
                 lemmas=[{"name": sub.lemma_names[k], "statement": sub.lemma_statements[k]} for sub, k in lemmas])
    search.offer(sketch, verdict, "sketch", 10.0 - len(lemmas))
    proofs: dict[str, list[str]] = {}
    entries = []
    for sub, k in lemmas:
        # both of the paper's lemma forms are recorded; form (b) (`statement`) is the one proved here
        entries.append({"name": sub.lemma_names[k], "statement": sub.lemma_statements[k],
                        "original_statement": sub.original_statements[k], "goal": sub.goals[k]})
        search.event("subgoal", name=sub.lemma_names[k], statement=sub.lemma_statements[k], status="open")
    node["subgoals"].extend(entries)

    async def prove(i: int) -> tuple[int, tuple[str, Verdict, str, dict[str, Any]]]:
        return i, await _prove_lemma(search, entries[i]["name"], entries[i]["statement"])

    tasks = [asyncio.ensure_future(prove(i)) for i in range(len(entries))]
    try:
        for next_done in asyncio.as_completed(tasks):
            i, (text, lemma_verdict, how, sub_trace) = await next_done
            entry = entries[i]
            name, statement = entry["name"], entry["statement"]
            entry.update({"status": lemma_verdict.status.value, "via": how,
                          "proof": text if lemma_verdict.proved else "", "trace": sub_trace})
            search.event("subgoal", name=name, statement=statement, status=lemma_verdict.status.value)
            if not lemma_verdict.proved:
                node["status"] = "lemma_failed"
                continue
            try:
                proofs[name] = tactic_body(text, name)
            except ValueError as e:
                entry["status"] = "unusable_proof"
                entry["error"] = str(e)
                node["status"] = "lemma_failed"
                continue
            partial = substitute(sketch, subgoals, proofs)
            search.offer(partial, None, "sketch", 10.0 - (len(lemmas) - len(proofs)))
    finally:  # an error in one lemma's search (or a cancelled attempt) stops the others
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if len(proofs) < len(lemmas):
        return None, None
    full = substitute(sketch, subgoals, proofs)
    final = await search.verify(full)
    node["recomposed"] = {"text": full, "status": final.status.value,
                          "errors": [m.data for m in final.errors[:5]] or final.reasons[:5]}
    node["status"] = "proved" if final.proved else "recomposition_failed"
    search.event("candidate", index=0, status=final.status.value, text=full,
                 errors=node["recomposed"]["errors"], recomposed=True)
    search.offer(full, final, "proof" if final.proved else "candidate", 100.0 if final.proved else 5.0)
    return full, final


async def _prove_lemma(search: Search, name: str, statement: str) -> tuple[str, Verdict, str, dict[str, Any]]:
    """Sampling first (cheap); then, while depth is left, decomposition of the lemma itself."""
    problem = Problem(name=name, formal_statement=statement, header=search.problem.header,
                      split=getattr(search.problem, "split", ""), source="subgoal")
    opts = DecomposeOptions.read(search.options)
    samples = opts.lemma_samples
    child = search.child(problem, search.budget.child(samples=samples), stop_at_first=True, batch=samples)
    # Both searches take their seeds now, before any wait: concurrent lemmas then draw the same seeds whatever
    # order they finish in.
    grandchild = search.child(problem, Budget(samples=opts.sub_samples, parent=search.budget))
    try:
        text, verdict, trace = await run_sample(child)
    except BudgetExhausted:
        return "", no_candidate("budget spent"), "sample", {}
    if verdict.proved:
        return text, verdict, "sample", trace
    depth = child.depth
    if depth >= opts.max_depth:
        return text, verdict, "sample", trace
    text, verdict, sub_trace = await run_decompose(grandchild)
    return text, verdict, "decompose", {"sample": trace, "decompose": sub_trace}
