"""Each strategy's options as a dataclass that owns their defaults; the CLI, the recipe and the strategies read them.

The rule: options are checked where they enter (`check_options`: the CLI's `--opt`, `ProveRecipe`, `arun_attempt`),
an unknown key refused in one line naming the valid ones; inside a search a strategy reads only its own fields
(`read`), because a child search carries its parent's options too (a decomposition lemma's sampler sees
`lemma_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from prover.errors import ProverError

MODES = ("complete", "cot")
# Tokens per generation when the user sets none, by prompt mode: chain-of-thought provers write 4-7k tokens on
# average and are run with 16-40k budgets (DeepSeek-Prover-V2 CoT, Goedel-Prover-V2's 40,960-token model
# length); a whole proof without a plan fits in a few thousand.
MAX_TOKENS = {"cot": 32768, "complete": 4096}
# Objects a run hands to a search beside its options (tree search's proof sessions): not settable by a user.
RUNTIME_KEYS = frozenset({"session", "sessions"})

Opts = TypeVar("Opts", bound="StrategyOptions")


@dataclass(frozen=True)
class StrategyOptions:
    mode: str = "complete"  # whole-proof prompt: complete (non-CoT, continues the code block) | cot
    # Samples of one attempt when its budget sets no sample limit: one attempt of `sample` is one sample (the
    # pass@k unit); the other strategies need several model calls to do anything.
    default_samples: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ProverError(f"option mode must be {' or '.join(MODES)}, not {self.mode!r}")

    @classmethod
    def read(cls: type[Opts], values: Mapping[str, Any]) -> Opts:
        """This strategy's options out of `values`, which may hold other strategies' keys too (a child search)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class SampleOptions(StrategyOptions):
    batch: int = 8  # samples drawn per generation call (one round of checks)
    stop_at_first: bool = True  # False: draw and check every sample of the budget (pass@k inside one attempt)


@dataclass(frozen=True)
class RepairOptions(StrategyOptions):
    rounds: int = 3  # repairs per chain before starting over from a fresh sample
    default_samples: ClassVar[int] = 4


@dataclass(frozen=True)
class DecomposeOptions(StrategyOptions):
    lemma_samples: int = 4  # whole-proof samples per lemma before it is decomposed itself
    subproblem_samples: int | None = None  # samples of a lemma's own decomposition (None: 4 x lemma_samples)
    max_depth: int = 2  # how many times a lemma may be decomposed again
    sketch: str | None = None  # a given sketch (a .lean theorem with sorries) tried before the model's
    sketch_only: bool = False  # with a given sketch: that sketch only, no model-written ones after it
    default_samples: ClassVar[int] = 32

    @property
    def sub_samples(self) -> int:
        return self.subproblem_samples if self.subproblem_samples is not None else 4 * self.lemma_samples


@dataclass(frozen=True)
class TreeOptions(StrategyOptions):
    width: int = 8  # tactic candidates asked of the model per proof state
    max_expansions: int = 64  # proof states expanded before the search gives up
    default_samples: ClassVar[int] = 256


OPTIONS: dict[str, type[StrategyOptions]] = {
    "sample": SampleOptions, "repair": RepairOptions, "decompose": DecomposeOptions, "tree": TreeOptions}


def options_type(strategy: str) -> type[StrategyOptions]:
    cls = OPTIONS.get(strategy)
    if cls is None:
        raise ProverError(f"unknown strategy {strategy!r} (choose from {', '.join(OPTIONS)})")
    return cls


def option_names(strategy: str) -> list[str]:
    return [f.name for f in fields(options_type(strategy))]


def check_options(strategy: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` checked against `strategy`'s options: an unknown key or a bad value is one `ProverError`; text
    (the CLI's `--opt`) becomes the field's type. Returns the given keys only, so a run records what was set."""
    cls = options_type(strategy)
    types = {f.name: f.type for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in RUNTIME_KEYS:
            out[key] = value
            continue
        if key not in types:
            raise ProverError(f"unknown option {key!r} for strategy {strategy} (valid: {', '.join(types)})")
        out[key] = _as_type(key, value, str(types[key]))
    cls.read(out)  # cross-field checks (mode)
    return out


def _as_type(key: str, value: Any, type_name: str) -> Any:
    """`value` as the option's declared type (`int`, `bool`, `str`, optionally `| None`); text (the CLI's
    `--opt`) is read as that type."""
    base = type_name.removesuffix(" | None")
    if value is None and base != type_name:
        return None
    if isinstance(value, str) and base != "str":
        value = {"true": True, "false": False}.get(value.lower(), value) if base == "bool" else _int(value)
    ok = {"bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool)}[base](value)
    if not ok:
        raise ProverError(f"option {key} wants {'true or false' if base == 'bool' else base}, got {value!r}")
    return value


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def default_max_tokens(mode: str) -> int:
    return MAX_TOKENS.get(mode, MAX_TOKENS["complete"])


def default_samples(strategy: str) -> int:
    return options_type(strategy).default_samples


def with_default_samples(strategy: str, budget: Mapping[str, Any]) -> dict[str, Any]:
    """THE rule for samples per attempt: the user's limit, else the strategy's `default_samples` (an attempt
    without a sample limit would never end, and a run's pass@k counts attempts of a known size)."""
    out = dict(budget)
    if out.get("samples") is None:
        out["samples"] = default_samples(strategy)
    return out

