"""A FAKE `lean_dojo`: the real package's names and shapes (`tests/test_leandojo_dojo.py` checks them against
the real package when it is installed) over a toy "Lean". No Lean exists here."""

from __future__ import annotations

from pathlib import Path

from fakes.leandojo_bench import CORPUS, THEOREMS, _thm


class FakeLeanDojoModule:
    """Stands in for `lean_dojo` where only its presence matters (a fake: no Lean exists here)."""

    __version__ = "fake"


def fake_lean_dojo():
    """A FAKE `lean_dojo` module: the real API's names and shapes (checked against the real package below when
    it is installed), over a toy "Lean" that honestly checks `constructor` on `∧`, `intro` on `→` and `exact h`.
    It stands in for LeanDojo's Lean process, which needs a traced repository and a real Lean toolchain."""
    import types
    from dataclasses import dataclass, field

    fake = types.ModuleType("lean_dojo")
    fake.__version__ = "fake"
    fake.processes = []  # every fake Lean process started, in order

    @dataclass(frozen=True)
    class LeanGitRepo:
        url: str
        commit: str

    @dataclass(frozen=True)
    class Theorem:
        repo: LeanGitRepo
        file_path: Path
        full_name: str

        def __post_init__(self):
            object.__setattr__(self, "file_path", Path(self.file_path))

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int = field(compare=False)
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofGivenUp:
        pass

    @dataclass(frozen=True)
    class LeanError:
        error: str

    class DojoInitError(Exception):
        pass

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    theorems = {
        "Demo.and_intro'": [(None, [("p q", "Prop"), ("hp", "p"), ("hq", "q")], "p ∧ q")],
        "Demo.nat_and": [(None, [("p q", "ℕ"), ("hp", "p = 1"), ("hq", "q = 2")], "p = 1 ∧ q = 2")],
    }

    def render(goals):
        out = []
        for case, hyps, target in goals:
            lines = ([f"case {case}"] if case else []) + [f"{n} : {t}" for n, t in hyps] + [f"⊢ {target}"]
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def step(goals, tactic):
        (case, hyps, target), rest = goals[0], goals[1:]
        words = tactic.split()
        if tactic == "constructor" and " ∧ " in target:
            a, b = target.split(" ∧ ", 1)
            return [("left", hyps, a), ("right", hyps, b), *rest]
        if len(words) == 2 and words[0] == "intro" and " → " in target:
            a, b = target.split(" → ", 1)
            return [(case, [*hyps, (words[1], a)], b), *rest]
        if len(words) == 2 and words[0] == "exact":
            if any(n == words[1] and t == target for n, t in hyps):
                return rest
            return f"type mismatch\n  {words[1]}\nhas a type other than\n  {target}"
        return f"unknown tactic {tactic!r}"

    class Dojo:
        def __init__(self, entry, timeout=600, additional_imports=[], build_deps=True):  # noqa: B006 (real API)
            self.entry, self.timeout = entry, timeout
            self.alive, self.states = False, {}

        def __enter__(self):
            if self.entry.full_name not in theorems:
                raise DojoInitError(f"Failed to locate the theorem with `{self.entry.full_name}`")
            self.alive = True
            fake.processes.append(self)
            self.states = {0: theorems[self.entry.full_name]}
            return self, TacticState(render(self.states[0]), 0)

        def __exit__(self, *exc):
            self.alive = False

        def run_tac(self, state, tactic):
            if not self.alive:
                raise DojoCrashError("Unexpected EOF")
            if tactic == "crash!":
                self.alive = False
                raise DojoCrashError("OOM")
            if tactic == "loop":
                raise DojoTacticTimeoutError()
            if tactic in ("sorry", "admit"):
                return ProofGivenUp()
            if tactic == "fake_close_all":  # test hook: an environment that wrongly reports success
                sid = len(self.states)
                self.states[sid] = []
                return ProofFinished(sid)
            if state.id not in self.states:
                return LeanError(f"unknown tactic state {state.id}")
            new = step(self.states[state.id], tactic)
            if isinstance(new, str):
                return LeanError(new)
            sid = len(self.states)
            self.states[sid] = new
            return ProofFinished(sid) if not new else TacticState(render(new), sid)

    for obj in (LeanGitRepo, Theorem, TacticState, ProofFinished, ProofGivenUp, LeanError, DojoInitError,
                DojoCrashError, DojoTacticTimeoutError, Dojo):  # fmt: skip
        setattr(fake, obj.__name__, obj)
    return fake


def fake_traced_repo(repo, dep):
    """A FAKE `lean_dojo.TracedRepo` (what `lean_dojo.trace` returns), built from the fixture's theorems."""
    import types

    import networkx as nx

    def traced_theorem(d, owner):
        tactics = []
        for t in d["traced_tactics"]:
            marked, prov = t["annotated_tactic"]
            tactics.append(
                types.SimpleNamespace(
                    tactic=t["tactic"],
                    state_before=t["state_before"],
                    state_after=t["state_after"],
                    get_annotated_tactic=lambda marked=marked, prov=prov: (marked, prov),
                )
            )
        path = d["file_path"].removeprefix(".lake/packages/batteries/")
        return types.SimpleNamespace(
            repo=owner,
            start=tuple(d["start"]),
            end=tuple(d["end"]),
            theorem=types.SimpleNamespace(file_path=Path(path), full_name=d["full_name"]),
            get_traced_tactics=lambda tactics=tactics: tactics,
        )

    theorems = [traced_theorem(d, dep if d["file_path"].startswith(".lake") else repo) for d in THEOREMS]
    theorems.append(
        traced_theorem(
            _thm("Nat.add_zero", "", [], "src/Init/Core.lean"), types.SimpleNamespace(is_lean4=True)
        )
    )  # a theorem of Lean itself: LeanDojo's exporter leaves those out
    graph = nx.DiGraph()
    for c in CORPUS:
        graph.add_node(
            c["path"],
            traced_file=types.SimpleNamespace(
                path=Path(c["path"]), get_premise_definitions=lambda c=c: c["premises"]
            ),
        )
    for c in CORPUS:
        for imp in c["imports"]:
            graph.add_edge(c["path"], imp)
    return types.SimpleNamespace(
        repo=repo,
        dependencies={"batteries": dep},
        traced_files_graph=graph,
        get_traced_theorems=lambda: theorems,
    )
