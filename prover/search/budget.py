"""One budget every strategy spends: samples, generated tokens, Lean calls, wall time.

Limits are None for "no limit". A child budget (`budget.child(...)`, e.g. one per decomposition lemma) has its
own limits and passes every charge up to its parent, so a recursive search never spends more than the whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    samples: int | None = None  # None: the strategy's default (`prover.search.options.with_default_samples`)
    tokens: int | None = None
    lean_calls: int | None = None
    wall_s: float | None = None
    used_samples: int = 0
    used_tokens: int = 0
    used_lean_calls: int = 0
    parent: Budget | None = field(default=None, repr=False)
    _started: float | None = field(default=None, repr=False)

    def start(self) -> Budget:
        if self._started is None:
            self._started = time.monotonic()
        return self

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    def charge(self, samples: int = 0, tokens: int = 0, lean_calls: int = 0) -> None:
        self.used_samples += samples
        self.used_tokens += tokens
        self.used_lean_calls += lean_calls
        if self.parent is not None:
            self.parent.charge(samples, tokens, lean_calls)

    def exhausted(self, limits: tuple[str, ...] = ("samples", "tokens", "lean_calls", "wall_s")) -> str | None:
        """Which of `limits` is reached ("samples", "tokens", "lean_calls", "wall_s"), or None. Checking a
        sample that was already drawn needs only Lean calls and time, so verification asks for those two."""
        if "samples" in limits and self.samples is not None and self.used_samples >= self.samples:
            return "samples"
        if "tokens" in limits and self.tokens is not None and self.used_tokens >= self.tokens:
            return "tokens"
        if "lean_calls" in limits and self.lean_calls is not None and self.used_lean_calls >= self.lean_calls:
            return "lean_calls"
        if "wall_s" in limits and self.wall_s is not None and self.elapsed_s >= self.wall_s:
            return "wall_s"
        return self.parent.exhausted(limits) if self.parent is not None else None

    def remaining_samples(self) -> int | None:
        return self._remaining("samples")

    def remaining_tokens(self) -> int | None:
        return self._remaining("tokens")

    def remaining_wall_s(self) -> float | None:
        """Seconds left of the tightest wall-clock limit here and in every ancestor, None when none is set."""
        own = None if self.wall_s is None else max(0.0, self.wall_s - self.elapsed_s)
        up = self.parent.remaining_wall_s() if self.parent is not None else None
        return own if up is None else (up if own is None else min(own, up))

    def _remaining(self, what: str) -> int | None:
        """What is left of limit `what` here and in every ancestor (the tightest), None when nothing limits it."""
        limit = getattr(self, what)
        own = None if limit is None else max(0, limit - getattr(self, f"used_{what}"))
        up = self.parent._remaining(what) if self.parent is not None else None
        return own if up is None else (up if own is None else min(own, up))

    def child(self, samples: int | None = None, tokens: int | None = None, lean_calls: int | None = None,
              wall_s: float | None = None) -> Budget:
        return Budget(samples, tokens, lean_calls, wall_s, parent=self).start()

    def copy(self) -> Budget:
        """The same limits, nothing spent (one per attempt)."""
        return Budget(self.samples, self.tokens, self.lean_calls, self.wall_s)

    def usage(self) -> dict[str, float]:
        return {"samples": self.used_samples, "tokens": self.used_tokens, "lean_calls": self.used_lean_calls,
                "wall_s": round(self.elapsed_s, 3)}

    def limits(self) -> dict[str, float | None]:
        return {"samples": self.samples, "tokens": self.tokens, "lean_calls": self.lean_calls, "wall_s": self.wall_s}
