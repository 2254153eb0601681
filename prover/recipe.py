"""`ProveRecipe`: THE description of one run's attempts, for `subgoal prove`, `subgoal eval` (one process or Ray
actors) and expert iteration, and the run settings a resumed run must keep.

Plain, picklable configuration (strategy, budget, model and Lean settings, seed, prompts file, sampling,
strategy options, tree-search interaction, model id to record). Wherever it runs it builds a backend
(`make_generator`) and a verifier (`make_checker`), and `arun` turns (problem, index) into a run-store Attempt
through the shared `prover.runner.Engine` and async checker. Per process it keeps what is expensive to open
and cannot travel: the parsed prompts and, for tree search, a pool of proof sessions (never pickled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from data.problem import Problem
from prover.errors import ProverError
from prover.generate.base import SamplingParams
from prover.prompts import PromptSet, load_prompts
from prover.search import Budget, arun_attempt, attempt_seed
from prover.search.core import AttemptResult
from prover.search.options import MAX_TOKENS, check_options, default_max_tokens, option_names, options_type

if TYPE_CHECKING:
    from data.config import ModelSettings
    from data.store import Attempt, RunStore
    from lean_env.checker import Checker
    from lean_env.settings import LeanSettings
    from prover.generate.base import Backend, StreamingBackend
    from prover.runner import AsyncChecker, Engine, SessionPool

INTERACTIONS = ("repl", "dojo")
__all__ = ["INTERACTIONS", "MAX_TOKENS", "ProveRecipe", "SettingsChanged", "check_resume", "open_run"]
@dataclass
class ProveRecipe:
    strategy: str = "sample"
    budget: dict[str, Any] = field(default_factory=dict)  # Budget fields, per attempt
    model_settings: ModelSettings | None = None
    lean_settings: LeanSettings | None = None
    seed: int | None = 0
    prompts_path: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields; max_tokens: per prompt mode
    options: dict[str, Any] = field(default_factory=dict)  # the strategy's options as set (prover.search.options)
    interaction: str = "repl"  # tree search: repl | dojo
    model_id: str = ""  # recorded on every attempt (the id the user asked for); default: the backend's
    planner_settings: ModelSettings | None = None  # decomposition's planner; no model: the prover plans
    _prompts: PromptSet | None = field(default=None, init=False, repr=False, compare=False)  # parsed once, travels
    _sessions: SessionPool | None = field(default=None, init=False, repr=False, compare=False)  # tree search, per process
    # the planner's Engine, per process (False: looked for, there is none)
    _planner: Engine | bool | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise ProverError(f"unknown interaction {self.interaction!r} (choose {' or '.join(INTERACTIONS)})")
        self.options = check_options(self.strategy, self.options)  # a bad key fails before anything starts

    def make_generator(self) -> Backend | StreamingBackend:
        from prover.generate import make_backend

        return make_backend(self.model_settings)

    def make_planner(self) -> Backend | StreamingBackend | None:
        """The planner's backend (any of `prover.generate`'s), or None when the prover writes its own sketches."""
        if self.planner_settings is None or not self.planner_settings.model:
            return None
        from prover.generate import make_backend

        return make_backend(self.planner_settings)

    def planner(self) -> Engine | None:
        """This process's planner engine, made on first use and shared by every attempt in the process, so the
        sketches of many problems are in flight to the planner at once."""
        if self._planner is None:
            from prover.runner import Engine

            backend = self.make_planner()
            self._planner = Engine(backend) if backend is not None else False
        return self._planner or None

    def check_generator(self) -> None:
        """Fail now, in one line, if `make_generator` cannot succeed (no such model, no server): before anything
        expensive starts or a run directory is made."""
        from prover.generate import check_model

        check_model(self.model_settings)
        if self.planner_settings is not None and self.planner_settings.model:
            check_model(self.planner_settings)

    def make_checker(self) -> Checker:
        from lean_env import make_verifier

        return make_verifier(self.lean_settings)

    async def arun(self, engine: Engine, checker: AsyncChecker, problem: Problem, index: int,
                   on_event: Callable[[dict], None] | None = None) -> Attempt:
        """Attempt `index` of `problem` as a run-store row (`data.store.Attempt`)."""
        result = await self.attempt(engine, checker, problem, index, on_event)
        attempt = result.to_attempt(problem, index)
        attempt.model = self.model_id or attempt.model
        return attempt

    async def attempt(self, engine: Engine, checker: AsyncChecker, problem: Problem, index: int,
                      on_event: Callable[[dict], None] | None = None, strategy: str | None = None,
                      **extra: Any) -> AttemptResult:
        """One attempt; a problem read from a .lean file with a sketch (`extra["sketch"]`) is completed from
        that sketch by decomposition, whatever the recipe's strategy."""
        strategy = strategy or self.strategy
        options = dict(self.options)
        sketch = (getattr(problem, "extra", None) or {}).get("sketch")
        if sketch and strategy == self.strategy:
            strategy = "decompose"  # of the run's options, those decomposition has (mode) still hold
            options = {k: v for k, v in options.items() if k in option_names(strategy)}
            options.update(sketch=sketch, sketch_only=True)
        if strategy == "tree":  # step-wise search keeps proof states: a session beside the engine
            options["sessions"] = self.sessions()
        planner = self.planner() if strategy == "decompose" else None
        return await arun_attempt(problem, strategy, engine, checker, Budget(**self.budget),
                                  attempt_seed(self.seed, problem.name, index), self.prompts(), on_event,
                                  sampling=self.sampling_params(), planner=planner, **options, **extra)

    def sessions(self) -> SessionPool:
        """This process's proof sessions for tree search (`interaction`), opened on first use, one per Lean
        worker, and reused: the REPL imports each header once, LeanDojo keeps its traced repositories."""
        if self._sessions is None:
            from lean_env.interaction import open_session
            from prover.runner import SessionPool

            size = int(getattr(self.lean_settings, "workers", None) or 1)
            self._sessions = SessionPool(lambda: open_session(self.interaction, settings=self.lean_settings), size)
        return self._sessions

    def sampling_params(self) -> SamplingParams:
        sampling = dict(self.sampling)
        sampling.setdefault("max_tokens", default_max_tokens(options_type(self.strategy).read(self.options).mode))
        return SamplingParams(**sampling)

    def prompts(self) -> PromptSet:
        if self._prompts is None:  # a bad --prompts file fails on the first call (the CLIs call it up front)
            self._prompts = load_prompts(self.prompts_path)
        return self._prompts

    def settings(self) -> dict[str, Any]:
        """What decides this run's attempts, as recorded in its store: a resumed run must keep all of it
        (`check_resume`). One place, so a run manifest can extend it."""
        sampling = self.sampling_params()
        return {"strategy": self.strategy, "budget": Budget(**self.budget).limits(), "seed": self.seed,
                "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                             "max_tokens": sampling.max_tokens},
                "options": dict(self.options), "prompts": self.prompts_path or "", "interaction": self.interaction,
                "model": self.model_id, "planner": self.planner_settings.model if self.planner_settings else None}

    def close(self) -> None:
        if self._sessions is not None:
            self._sessions.close()
            self._sessions = None
        if self._planner:
            self._planner.close()
        self._planner = None

    def __getstate__(self) -> dict[str, Any]:
        # live Lean sessions and the planner's engine never travel to another process
        return {**self.__dict__, "_sessions": None, "_planner": None}


# Settings that must match when a run resumes: mixing them would make its attempts (and pass@k) meaningless.
RESUME_KEYS = ("problem_set", "split", "model", "strategy", "putnam_answers", "budget", "sampling", "options",
               "seed", "prompts", "interaction", "stop_at_first", "planner")


class SettingsChanged(ProverError):
    """A run directory resumed with settings other than those it was started with."""


def check_resume(recorded: dict[str, Any], current: dict[str, Any], where: object,
                 keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """Refuse to continue a run whose recorded settings differ from `current` on `keys`, naming every change."""
    changed = [f"{key}={recorded[key]!r}, not {current[key]!r}" for key in keys
               if key in recorded and key in current and _plain(recorded[key]) != _plain(current[key])]
    if changed:
        raise SettingsChanged(f"{where} was started with {'; '.join(changed)}; use another --out "
                              "(or the same settings to resume)")


def _plain(value: Any) -> Any:
    """JSON's view of a value: a tuple recorded in the store reads back as a list."""
    import json

    return json.loads(json.dumps(value, default=str))


def open_run(store: RunStore, name: str, settings: dict[str, Any], where: object, meta_key: str = "settings",
             keys: tuple[str, ...] = RESUME_KEYS, started: bool | None = None) -> tuple[int, dict[str, Any]]:
    """The id of run `name` in `store` and the settings it was started with. While it has not `started` (by
    default: has no attempt yet; new, or an earlier start that failed), `settings` become its settings; once
    started, changed settings are refused (`SettingsChanged`)."""
    run_id = store.start_run(name, settings)
    if not (started if started is not None else bool(store.done(run_id))):
        store.set_meta(run_id, meta_key, settings)
    recorded = store.get_meta(run_id, meta_key) or store.run(run_id).config
    check_resume(recorded, settings, where, keys)
    return run_id, recorded
