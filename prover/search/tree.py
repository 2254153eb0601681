"""`tree`: best-first search over proof states.

Each expansion asks the model for `width` candidate tactics for the state (the `tactic` template: statement,
tactics so far, current goals), runs each distinct one in the `ProofSession` (the REPL's tactic mode, or
LeanDojo), and queues the resulting states scored by the cumulative log-probability of their tactics. States
whose goals were already reached are dropped. A finished proof is re-checked by the Verifier; only its verdict
counts. A search holds one proof session (a REPL process) throughout: from the run's `SessionPool`
(`sessions` option), a given `session`, or one opened beside the verifier; session calls block, so they run
on a thread while other attempts' searches go on."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any

from lean_env.checker import Checker
from lean_env.interaction import ProofSession, ProofState
from lean_env.verdict import Verdict
from prover.prompts.extract import extract_tactic
from prover.search.core import BudgetExhausted, Search, no_candidate
from prover.search.options import TreeOptions

if TYPE_CHECKING:
    from prover.runner import AsyncChecker

# How long a cancelled search waits for its session call before killing the REPL: a tactic usually answers in
# milliseconds, and a REPL left alive keeps its imported header for the pool's next search (a restart re-imports).
CANCEL_GRACE_S = 0.5


async def run_tree(search: Search) -> tuple[str, Verdict, dict[str, Any]]:
    sessions = search.options.get("sessions")
    if sessions is not None:
        async with sessions.session() as session:
            return await _search(search, session)
    session = search.options.get("session")
    if session is not None:
        return await _search(search, session)
    session = _session_beside(search.verifier)
    try:
        return await _search(search, session)
    finally:
        session.close()


def _session_beside(verifier: Checker | AsyncChecker) -> ProofSession:
    """Without a session given: a REPL session running the same REPL program as the verifier's pool."""
    from lean_env.interaction import ReplSession
    from lean_env.repl import Repl
    from prover.errors import ProverError

    pool = getattr(getattr(verifier, "checker", verifier), "pool", None)  # the Verifier inside an AsyncChecker
    if pool is None or not getattr(pool, "command", None):
        raise ProverError("the tree strategy needs a proof session (`--interaction repl|dojo`)")
    repl = Repl(pool.command, pool.cwd, pool.timeout_s, pool.memory_mb)
    return ReplSession(repl, own_repl=True)


async def _search(search: Search, session: ProofSession) -> tuple[str, Verdict, dict[str, Any]]:
    opts = TreeOptions.read(search.options)
    width, max_expansions = opts.width, opts.max_expansions
    problem = search.problem
    nodes: list[dict[str, Any]] = []
    trace: dict[str, Any] = {"width": width, "nodes": nodes}
    best_failed: tuple[str, Verdict] | None = None
    t0 = time.perf_counter()
    root = await _in_thread(session, session.start, problem)
    search.charge_lean(1, time.perf_counter() - t0)
    nodes.append({"parent": None, "tactic": None, "logprob": 0.0, "goals": list(root.goals)})
    counter = itertools.count()
    queue: list[tuple[float, int, int, ProofState]] = [(0.0, next(counter), 0, root)]
    seen = {tuple(root.goals)}
    expansions = 0
    try:
        while queue and expansions < max_expansions:
            neg_score, _, node_id, state = heapq.heappop(queue)
            expansions += 1
            tactics_so_far = "".join(f"  {t}\n" for t in _tactics(nodes, node_id))
            prompt = search.render("tactic", tactics=tactics_so_far, goals="\n\n".join(state.goals))
            completions = await search.generate([prompt], width, "tactic",
                                                max_tokens=min(search.sampling.max_tokens, 256))
            candidates: dict[str, float] = {}
            for c in completions[0]:
                tac = extract_tactic(c.text)
                if tac and (tac not in candidates or c.logprob > candidates[tac]):
                    candidates[tac] = c.logprob
            search.event("expand", node=node_id, goals=list(state.goals), tactics=list(candidates))
            for tac, logprob in sorted(candidates.items(), key=lambda kv: -kv[1]):
                search.check_budget(("lean_calls", "wall_s"))
                t1 = time.perf_counter()
                res = await _in_thread(session, session.run_tactic, state, tac)
                search.charge_lean(1, time.perf_counter() - t1)
                if res.error is not None:
                    search.event("tactic", node=node_id, tactic=tac, ok=False, error=res.error.splitlines()[0][:200])
                    continue
                child_id = len(nodes)
                nodes.append({"parent": node_id, "tactic": tac, "logprob": round(logprob, 4), "goals": res.goals})
                search.event("tactic", node=node_id, tactic=tac, ok=True, goals=len(res.goals))
                if res.finished:
                    text = session.proof_text(problem, res.state)
                    verdict = await search.verify(text)
                    nodes[child_id]["verdict"] = verdict.status.value
                    search.event("candidate", index=child_id, status=verdict.status.value, text=text,
                                 errors=[m.data for m in verdict.errors[:3]] or verdict.reasons[:3])
                    if verdict.proved:
                        search.offer(text, verdict, "proof", 100.0)
                        trace["proof_path"] = _tactics(nodes, child_id)
                        return text, verdict, trace
                    best_failed = best_failed or (text, verdict)
                    continue
                key = tuple(res.goals)
                if key in seen:
                    continue
                seen.add(key)
                heapq.heappush(queue, (neg_score - logprob, next(counter), child_id, res.state))
    except BudgetExhausted:
        pass
    trace["expansions"] = expansions
    if best_failed is not None:
        return best_failed[0], best_failed[1], trace
    return "", no_candidate(f"no proof found in {expansions} expansions"), trace


async def _in_thread(session: ProofSession, fn: Any, *args: Any) -> Any:
    """A blocking call of `session` on a thread. Cancelled meanwhile (Ctrl-C, another attempt's proof), it still
    waits for the call to return, since the session goes back to its pool only once no thread uses it; but past
    `CANCEL_GRACE_S` it interrupts the session (kills its REPL), so a hanging tactic does not hold the cancel until
    the REPL's timeout. Again every grace period: a restart racing the kill is killed too."""
    call = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        interrupt = getattr(session, "interrupt", None)  # a session without it is waited for
        if interrupt is not None:
            while not (await asyncio.wait([call], timeout=CANCEL_GRACE_S))[0]:
                interrupt()
        await asyncio.wait([call])
        raise


def _tactics(nodes: list[dict[str, Any]], node_id: int) -> list[str]:
    out = []
    while node_id is not None and nodes[node_id]["tactic"] is not None:
        out.append(nodes[node_id]["tactic"])
        node_id = nodes[node_id]["parent"]
    return out[::-1]
