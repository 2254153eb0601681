"""What every strategy shares: the `Search` context (engine, checker, budget, prompts, seeds, events, the
best result so far) and the `AttemptResult` an attempt returns.

Strategies are coroutines: `generate` and `verify_many` await the shared engine and checker (`prover.runner`),
so the attempts of many problems interleave. Every wait is bounded by the wall budget: a generation that
outlasts it is cancelled and the search ends with `wall_s`, not after the generation returns. A decomposition
may have its own planner engine (`planner`): `sketch` generations go to it, every other kind to the prover, and
the two models' tokens and generation time are counted apart (`planner_*` in the timings).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from data.problem import Problem
from lean_env.verdict import Status, Verdict
from prover.generate.base import Completion, SamplingParams, derive_seed
from prover.prompts import PromptSet, load_prompts
from prover.prompts.extract import candidate_proof, candidate_proofs
from prover.search.budget import Budget
from prover.textwork import TextWorkers

if TYPE_CHECKING:
    from data.store import Attempt
    from prover.runner import AsyncChecker, Engine

Event = dict[str, Any]
T = TypeVar("T")


class BudgetExhausted(Exception):
    """Raised inside a strategy when the budget allows no further generation or Lean call."""


@dataclass
class AttemptResult:
    problem: str
    strategy: str
    text: str  # the final Lean text: the verified proof, else the best candidate (may be "")
    verdict: Verdict
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lean_calls: int = 0
    samples: int = 0
    trace: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    stopped: str = ""  # "proved", or the budget limit that ended the search, or "done"

    @property
    def proved(self) -> bool:
        return self.verdict.proved

    def to_attempt(self, problem: Problem, index: int) -> Attempt:
        """This result as a run-store row (`data.store.Attempt`)."""
        from data.store import Attempt

        return Attempt(problem=problem.name, index=index, text=self.text, status=self.verdict.status.value,
                       verdict=self.verdict.to_dict(), strategy=self.strategy, model=self.model,
                       sampling=self.sampling, seed=self.seed, prompt_tokens=self.prompt_tokens,
                       completion_tokens=self.completion_tokens, timings=self.timings, trace=self.trace,
                       split=problem.split or "")


def no_candidate(reason: str) -> Verdict:
    return Verdict(Status.FAILED, reasons=[reason])


class Search:
    """The context one attempt runs in. Strategies await `generate`, `verify`, `verify_many`, call `render`,
    `extract`, `event`, `offer` (best result so far), and may open children (`child`) with their own budget for
    sub-problems. `backend` is a `prover.runner.Engine`, `verifier` an async checker (`AsyncChecker`)."""

    def __init__(self, problem: Problem, backend: Engine, verifier: AsyncChecker, budget: Budget, seed: int | None,
                 prompts: PromptSet | None = None, on_event: Callable[[Event], None] | None = None,
                 sampling: SamplingParams | None = None, options: dict[str, Any] | None = None,
                 parent: Search | None = None, planner: Engine | None = None):
        self.problem = problem
        self.backend = backend
        self.planner = planner  # the backend that writes sketches; None: the prover plans too
        self.verifier = verifier
        self.budget = budget.start()
        self.seed = seed
        self.prompts = prompts or load_prompts()
        self.on_event = on_event
        self.sampling = sampling or SamplingParams()
        self.options = dict(options or {})
        self.parent = parent
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.truncated = 0  # completions cut at max_tokens (finish_reason "length")
        self.samples = 0
        self.lean_calls = 0
        self.gen_s = 0.0
        self.lean_wall_s = 0.0
        self.lean_cpu_s = 0.0
        self.last_call_seed: int | None = None
        self._seed_calls = 0  # generation calls (and children) seeded so far: each gets derive_seed(seed, i)
        self.planner_prompt_tokens = 0
        self.planner_completion_tokens = 0
        self.planner_gen_s = 0.0
        self.best: tuple[float, str, Verdict | None, str] | None = None  # (score, text, verdict, kind)

    # ---- children (decomposition lemmas) --------------------------------------------------------------------
    def child(self, problem: Problem, budget: Budget, **options: Any) -> Search:
        seed = self._next_seed()
        return Search(problem, self.backend, self.verifier, budget, seed, self.prompts, self.on_event,
                      self.sampling, {**self.options, **options}, parent=self, planner=self.planner)

    def _account(self, prompt_tokens: int = 0, completion_tokens: int = 0, samples: int = 0, lean_calls: int = 0,
                 gen_s: float = 0.0, lean_wall_s: float = 0.0, lean_cpu_s: float = 0.0, truncated: int = 0,
                 planner: bool = False) -> None:
        node: Search | None = self
        while node is not None:
            if planner:
                node.planner_prompt_tokens += prompt_tokens
                node.planner_completion_tokens += completion_tokens
                node.planner_gen_s += gen_s
            else:
                node.prompt_tokens += prompt_tokens
                node.completion_tokens += completion_tokens
                node.gen_s += gen_s
            node.truncated += truncated
            node.samples += samples
            node.lean_calls += lean_calls
            node.lean_wall_s += lean_wall_s
            node.lean_cpu_s += lean_cpu_s
            node = node.parent

    def _next_seed(self) -> int | None:
        """The seed of this search's next generation call or child search, mixed from the attempt's seed: a
        child and its parent never draw with the same seed (counting up from one seed, they would)."""
        if self.seed is None:
            return None
        self._seed_calls += 1
        return derive_seed(self.seed, self._seed_calls - 1)

    # ---- generation ------------------------------------------------------------------------------------------
    def check_budget(self, limits: tuple[str, ...] = ("samples", "tokens", "lean_calls", "wall_s")) -> None:
        why = self.budget.exhausted(limits)
        if why:
            raise BudgetExhausted(why)

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """`awaitable`'s result, or BudgetExhausted("wall_s") the moment the wall budget runs out meanwhile."""
        left = self.budget.remaining_wall_s()
        if left is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, max(left, 0.0))
        except TimeoutError:
            raise BudgetExhausted("wall_s") from None

    async def generate(self, prompts: list[str], n: int, kind: str, last: bool = False,
                       **overrides: Any) -> list[list[Completion]]:
        """n samples per prompt (fewer when the budget has fewer left), charged to the budget. `last`: the
        strategy will ask for nothing after these (`done_generating` as soon as they are asked for)."""
        self.check_budget()
        left = self.budget.remaining_samples()
        if left is not None:
            n = max(1, min(n, left // max(1, len(prompts))))
        params = self.params(kind, **overrides)
        tokens_left = self.budget.remaining_tokens()  # a lemma's search is capped by its ancestors' limits too
        if tokens_left is not None:
            params = replace(params, max_tokens=max(1, min(params.max_tokens, tokens_left)))
        params = replace(params, seed=self._next_seed())
        self.last_call_seed = params.seed  # sample j of this call drew with sample_seed(last_call_seed, j)
        # Reserved before waiting, so concurrent children (decomposition lemmas) never overdraw `samples`.
        self.budget.charge(samples=n * len(prompts))
        planner = self.planner is not None and kind == "sketch"
        model = self.model_for(kind)
        t0 = time.perf_counter()
        requests = [model.generate(p, params, n) for p in prompts]
        if last:
            self.done_generating()
        try:
            out = await self.wait(asyncio.gather(*requests))
        except BaseException:  # out of time or cancelled: nothing was drawn
            self.budget.charge(samples=-n * len(prompts))
            raise
        dt = time.perf_counter() - t0
        flat = [c for row in out for c in row]
        tokens = sum(c.completion_tokens for c in flat)
        self.budget.charge(samples=len(flat) - n * len(prompts), tokens=tokens)
        self._account(prompt_tokens=sum(c.prompt_tokens for c in flat), completion_tokens=tokens,
                      samples=len(flat), gen_s=dt, truncated=sum(c.finish_reason == "length" for c in flat),
                      planner=planner)
        self.event("generate", prompt_kind=kind, n=len(flat), tokens=tokens, seconds=round(dt, 3),
                   model="planner" if planner else "prover")
        return out

    def done_generating(self) -> None:
        """This attempt will ask for no further generation, so the runner may close the engine while its checks
        run. A root search's word only: a lemma's siblings may still generate. Engines outside the runner (a
        plain `Engine`) have no such handle and nothing to do."""
        done = getattr(self.backend, "done_generating", None)
        if self.parent is None and done is not None:
            done()

    def params(self, kind: str, **overrides: Any) -> SamplingParams:
        stop = tuple(self.prompts[kind].stop)
        return replace(self.sampling, stop=stop, **overrides)

    def model_for(self, kind: str) -> Engine:
        """The backend that answers prompts of `kind`: the planner writes sketches when there is one."""
        return self.planner if self.planner is not None and kind == "sketch" else self.backend

    def render(self, kind: str, problem: Problem | None = None, **fields: str) -> str:
        model = self.model_for(kind)  # a prompt goes through the chat template of the model that reads it
        return self.prompts.render(kind, problem or self.problem, chat_format=model.format_chat, **fields)

    def extract(self, kind: str, completion: str, problem: Problem | None = None) -> str | None:
        return candidate_proof(completion, problem or self.problem, self.prompts[kind].continues_code)

    async def extract_many(self, kind: str, completions: list[str], problem: Problem | None = None) -> list[str | None]:
        """`extract` of each completion, on the checker's text workers where it has them (off the GIL)."""
        problem, continues = problem or self.problem, self.prompts[kind].continues_code
        workers = getattr(self.verifier, "text_workers", None)
        if not isinstance(workers, TextWorkers):  # (a Ray actor's checker answers any attribute as a remote call)
            return candidate_proofs(completions, problem, continues)
        return await self.wait(workers.run(candidate_proofs, completions, problem, continues))

    # ---- Lean ------------------------------------------------------------------------------------------------
    async def verify(self, text: str, problem: Problem | None = None) -> Verdict:
        return (await self.verify_many([text], problem))[0]

    async def verify_many(self, texts: list[str], problem: Problem | None = None) -> list[Verdict]:
        self.check_budget(("lean_calls", "wall_s"))
        problem = problem or self.problem
        left = None if self.budget.lean_calls is None else self.budget.lean_calls - self.budget.used_lean_calls
        texts = texts if left is None else texts[:max(1, left)]
        self.budget.charge(lean_calls=len(texts))  # reserved before waiting, as in `generate`
        t0 = time.perf_counter()
        try:
            verdicts = await self.wait(self.verifier.verify_many([(problem, t) for t in texts]))
        except BaseException:
            self.budget.charge(lean_calls=-len(texts))
            raise
        self._account(lean_calls=len(texts), lean_wall_s=time.perf_counter() - t0,
                      lean_cpu_s=sum(v.cpu_time for v in verdicts))
        return verdicts

    def charge_lean(self, calls: int, seconds: float = 0.0) -> None:
        """Lean calls made outside the Verifier (tree search's tactic steps)."""
        self.budget.charge(lean_calls=calls)
        self._account(lean_calls=calls, lean_wall_s=seconds)

    # ---- reporting -------------------------------------------------------------------------------------------
    def event(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event({"kind": kind, "problem": self.problem.name, "depth": self.depth, **data})

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def offer(self, text: str, verdict: Verdict | None, kind: str, score: float) -> None:
        """A candidate for "best result so far" of the whole attempt (what Ctrl-C prints). Higher score wins:
        a verified proof beats a compiling sketch (fewer open sorries first) beats a failed candidate."""
        if self.parent is not None:
            return  # a lemma's proof is not a result for the problem; its parent offers the recomposition
        if self.best is None or score > self.best[0]:
            self.best = (score, text, verdict, kind)
            status = verdict.status.value if verdict else "partial"  # a sketch with some lemmas substituted
            self.event("best", text=text, status=status, what=kind, score=score)

    def timings(self, wall_s: float) -> dict[str, float]:
        # GPU time is generation time only where the GPU is ours: a backend says where it runs (`device`); a
        # remote server's (OpenAI backend: HTTP time) or an undeclared one is not counted as our GPU's.
        gpu = str(getattr(self.backend, "device", ""))
        out = {"wall_s": round(wall_s, 4), "gen_s": round(self.gen_s, 4),
               "gpu_s": round(self.gen_s, 4) if gpu.startswith("cuda") else 0.0,
               "lean_wall_s": round(self.lean_wall_s, 4), "lean_cpu_s": round(self.lean_cpu_s, 4)}
        if self.planner is not None:  # the planner's usage apart from the prover's (often a remote server)
            out.update(planner_prompt_tokens=self.planner_prompt_tokens,
                       planner_completion_tokens=self.planner_completion_tokens,
                       planner_gen_s=round(self.planner_gen_s, 4))
        return out

    def result(self, strategy: str, text: str, verdict: Verdict, trace: dict[str, Any], stopped: str,
               wall_s: float) -> AttemptResult:
        sampling = {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                    "max_tokens": self.sampling.max_tokens, "budget": self.budget.limits(),
                    "completions": self.samples, "cut_at_max_tokens": self.truncated, **{
                        k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool))}}
        if self.planner is not None:
            sampling["planner"] = self.planner.model_id or "planner"
        return AttemptResult(self.problem.name, strategy, text, verdict, self.prompt_tokens, self.completion_tokens,
                             self.lean_calls, self.samples, trace, self.timings(wall_s),
                             self.backend.model_id, sampling, self.seed, stopped)
