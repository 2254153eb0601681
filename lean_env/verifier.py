"""`Verifier`: is this proof text a complete, honest proof of the problem's theorem? -> `Verdict`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from lean_env import soundness, text
from lean_env.errors import PoolClosed, ReplFailure, ReplGarbage, ReplOutOfMemory, ReplTimeout, machine_fault
from lean_env.pool import HeaderRejected, ReplPool, Session
from lean_env.problem import LeanProblem
from lean_env.protocol import CommandResult
from lean_env.soundness import Finding
from lean_env.verdict import Message, Pos, Sorry, Status, Verdict

STANDARD_AXIOMS = frozenset({"propext", "Classical.choice", "Quot.sound"})
AXIOM_REASONS = {
    "sorryAx": "uses `sorry` (sorryAx in #print axioms)",
    "Lean.ofReduceBool": "uses native_decide / Lean.ofReduceBool (trusts the compiler)",
    "Lean.ofReduceNat": "uses Lean.ofReduceNat (trusts the compiler)",
    "Lean.trustCompiler": "uses Lean.trustCompiler (trusts the compiler)",
}
SORRY_WARNING = re.compile(r"declaration uses ['`]sorry['`]")
_AXIOMS_MSG = re.compile(r"^'(?P<name>.*)' depends on axioms:\s*\[(?P<list>.*)\]\s*$", re.S)
_NO_AXIOMS_MSG = re.compile(r"^'(?P<name>.*)' does not depend on any axioms\s*$", re.S)


def _ident(name: str) -> str:
    """`name` as Lean source: components that are not plain identifiers go in «»."""
    return ".".join(p if re.fullmatch(r"[^\W\d][\w'!?]*", p) else f"«{p}»" for p in name.split("."))


# `pp.maxSteps` (default 5000) elides what lies past it as `⋯`: two statements differing only there would print
# alike, so both types are printed whole (and a type with `⋯` left in it is never taken as the problem's)
PRINT_WHOLE = "set_option pp.maxSteps 100000000 in\nset_option pp.all true in\n"


def check_command(name: str) -> str:
    """The command the verifier sends, in the proof's environment, after the proof compiled. `_root_.` pins the
    very constant whatever `open`/`namespace` the proof left behind."""
    return f"#print axioms _root_.{_ident(name)}\n{PRINT_WHOLE}#check @_root_.{_ident(name)}"


def reference_command(statement: str, name: str) -> str:
    """The command the verifier sends, in the clean header environment, to elaborate the problem's statement."""
    return text.with_proof(statement, "sorry") + "\n" + f"{PRINT_WHOLE}#check @_root_.{_ident(name)}"


def parse_axioms_answer(data: str) -> tuple[str, list[str]] | None:
    """(constant, axioms) of a `#print axioms` message (`'NAME' depends on axioms: [a, b]` / `'NAME' does not
    depend on any axioms`), or None when `data` is no such message."""
    m = _NO_AXIOMS_MSG.match(data.strip())
    if m:
        return m.group("name"), []
    m = _AXIOMS_MSG.match(data.strip())
    if not m:
        return None
    return m.group("name"), [a.strip() for a in re.split(r"[,\s]+", m.group("list")) if a.strip()]


def as_sent(src: str) -> str:
    """`src` as the REPL will read it: `protocol.encode` turns a lone surrogate into "?", so the scan must see
    that "?" too (`apply\\ud800` is `apply?` to Lean)."""
    return src.encode("utf-8", errors="replace").decode("utf-8")


@dataclass
class Prepared:
    """A proof ready for Lean: what is sent, and what was found before sending it."""

    name: str  # the theorem to check
    header: str  # the problem's header (imports, options, opens)
    body: str  # sent in the header's environment
    statement: str  # the problem's formal statement (answers filled when given)
    line_shift: int = 0  # add to a body line number to get the line in the submitted text
    findings: list[Finding] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # rejections found without Lean
    run_lean: bool = True
    # the theorem's statement differs as text; the elaborated types decide (notation, hypothesis names)
    statement_text_changed: bool = False
    answers: dict[str, str] = field(default_factory=dict)  # answer produced: the proof's values
    answer_correct: bool | None = None


@dataclass
class _Outcome:
    body: CommandResult
    check: CommandResult | None
    reference: str | None
    reference_error: str | None
    wall_s: float
    cpu_s: float


class Verifier:
    """Checks proofs with a `ReplPool`. Thread-safe; `verify_many` keeps every worker busy.

    A proof is PROVED only when all of these hold (docs/lean_env.md has the class each layer closes):
    1. the lexical scan (`soundness.scan`, on exactly the text sent, in every string reading) finds nothing;
    2. the theorem is declared at top level; PutnamBench answer abbrevs keep their signature (answer given:
       the verifier places the recorded abbrev and refuses a proof's own);
    3. Lean reports no error, no sorry, no "declaration uses 'sorry'" warning;
    4. `#print axioms _root_.NAME` answers exactly once, about NAME, with only propext, Classical.choice,
       Quot.sound;
    5. `#check @_root_.NAME` under `pp.all` answers exactly once, about NAME, with the type of the problem's
       statement elaborated in the clean header environment, up to bound-variable names (a statement that
       differs only as text, e.g. `Real` for `ℝ` or renamed hypotheses, passes; a changed meaning does not);
    6. every REPL answer is the answer to its request (env ids in sequence, nothing after it).
    Dangerous scan findings (code that runs at elaboration time or turns kernel checks off) are rejected
    without running Lean; the others (sorry, axiom, redefinition, ...) still run Lean so the verdict has
    Lean's messages and the sorries' goals. Lean errors give FAILED; a loophole that compiles gives UNSOUND.

    REPL commands sent (a fake Lean must answer exactly these), all on one pool worker:
    a. header, once per REPL process: `{"cmd": <the header's import lines>}` (no env) -> env I; then, if the
       header has more than imports, `{"cmd": <rest of the header: options, opens>, "env": I}` -> env H
       (H = I otherwise; with an empty header, H is absent and the proof runs without "env");
    b. the proof: `{"cmd": <body>, "env": H}` -> env P, where body = the submitted text without its import
       lines and without a leading copy of the rest of the header (a completion that repeats the prompt), plus
       the problem's preamble (e.g. answer abbrevs) in front when the proof does not declare it;
    c. only when (b) has no error: `{"cmd": "#print axioms _root_.NAME\\nset_option pp.maxSteps 100000000 in
       \\nset_option pp.all true in\\n#check @_root_.NAME", "env": P}` -> an info message "'NAME' depends on axioms: [a, b]" (or "'NAME' does not depend on any
       axioms") and an info message with the elaborated type;
    d. once per (header, statement) per Verifier (cached): `{"cmd": <statement + " sorry">
       "\\nset_option pp.maxSteps 100000000 in\\nset_option pp.all true in\\n#check @_root_.NAME", "env": H}` -> the reference type (the last info message).
    """

    def __init__(self, pool: ReplPool | None, *, lean_version: str | None = None, mathlib_version: str | None = None,
                 allowed_axioms: frozenset[str] = STANDARD_AXIOMS, check_types: bool = True, lexical: bool = True):
        self.pool = pool  # None: a Verifier that only `prepare`s (what kernel replay re-checks, lean_env.audit)
        self.lean_version = lean_version
        self.mathlib_version = mathlib_version
        self.allowed_axioms = allowed_axioms
        self.check_types = check_types
        self.lexical = lexical  # False only to test Lean's own layers (integration tests): never in production
        self._references: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._ref_lock = threading.Lock()

    # ---- public API ---------------------------------------------------------------------------------
    def verify(self, problem: LeanProblem, proof_src: str) -> Verdict:
        return self.verify_many([(problem, proof_src)])[0]

    def verify_many(self, items: list[tuple[LeanProblem, str]]) -> list[Verdict]:
        """Verdicts in the order of `items`; all proofs are queued first so every worker stays busy."""
        return self.check_prepared(self.preparer().stream(self, items))

    def preparer(self) -> Preparer:
        """This verifier's `prepare`, as a picklable function of (problem, proof) items: the same preparation in
        another process (`prover.textwork`), whose results `check_prepared` takes."""
        return Preparer(self.lean_version, self.mathlib_version, self.allowed_axioms, self.check_types, self.lexical)

    def check_prepared(self, prepared: Iterable[tuple[Prepared | Verdict, float]]) -> list[Verdict]:
        """Verdicts of proofs `prepare`d already (each with the monotonic time its check began), in order."""
        pending: list[tuple[Prepared | Verdict, Future | None, float]] = []
        for prep, t0 in prepared:
            if isinstance(prep, Verdict) or not prep.run_lean:
                pending.append((prep, None, t0))
            else:
                pending.append((prep, self.pool.submit(lambda s, p=prep: self._run(s, p), prep.header), t0))
        out = []
        for prep, fut, t0 in pending:
            if isinstance(prep, Verdict):
                out.append(prep)
            elif fut is None:
                out.append(self._verdict(Status.UNSOUND, reasons=prep.reasons, wall=time.monotonic() - t0))
            else:
                out.append(self._collect(prep, fut, t0))
        return out

    def submit(self, problem: LeanProblem, proof_src: str, *, timeout_s: float | None = None) -> Future:
        """Non-blocking single verification: a future of the Verdict (async callers: `asyncio.wrap_future`).
        `timeout_s`: wall-clock limit of each REPL call for this proof (default: the pool's)."""
        result: Future = Future()
        t0 = time.monotonic()
        prep = self._prepare_safely(problem, proof_src)
        if isinstance(prep, Verdict):
            result.set_result(prep)
        elif not prep.run_lean:
            result.set_result(self._verdict(Status.UNSOUND, reasons=prep.reasons, wall=time.monotonic() - t0))
        else:
            fut = self.pool.submit(lambda s: self._run(s, prep, timeout_s), prep.header)
            fut.add_done_callback(lambda f: result.set_result(self._collect(prep, f, t0)))
        return result

    def close(self, cancel_running: bool = False) -> None:
        if self.pool is not None:
            self.pool.close(cancel_running=cancel_running)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- before Lean --------------------------------------------------------------------------------
    def _prepare_safely(self, problem: LeanProblem, proof_src: str) -> Prepared | Verdict:
        try:
            return self.prepare(problem, proof_src)
        except Exception as e:  # a bug on odd text must cost one verdict, not the whole batch
            return self._verdict(Status.CRASHED, reasons=[f"verifier error: {type(e).__name__}: {e}"])

    def prepare(self, problem: LeanProblem, proof_src: str) -> Prepared | Verdict:
        statement = problem.formal_statement
        name = text.theorem_name(statement)
        if name is None:
            return self._verdict(Status.FAILED, reasons=["the problem's statement declares no theorem"])
        header = problem.header or ""
        src = as_sent(proof_src).lstrip("\ufeff")
        imports, rest = text.split_imports(src)
        if not header.strip():
            header = imports  # a bare file: its own imports are the header
        else:
            extra = set(text.imported_modules(imports)) - set(text.imported_modules(header))
            if extra:
                return self._verdict(Status.FAILED, reasons=[
                    f"the proof imports {', '.join(sorted(extra))}, which the problem's header does not"])
        rest = _drop_repeated_header(rest, text.split_imports(header)[1])
        lines_before = src[:len(src) - len(rest)].count("\n")  # the header's lines, in the submitted text
        given = (problem.extra or {}).get(text.ANSWER_MODE) == "given"
        reasons: list[str] = []
        # Answers go first, where the reference elaborates them (the clean header environment): in place, an
        # `instance`, `notation` or `open` of the proof before them would change what their text means.
        prefix = ""
        if given:  # the verifier places the recorded answers; a proof may repeat them, never give its own
            rest, reasons = _remove_given_answers(statement, rest)
        else:  # what the proof declares as the problem does (fixed defs, a recorded answer) must mean it too
            rest, prefix = _lift_declarations(rest, _as_the_problem_declares(problem, rest))
        if not prefix:
            for d in text.declarations(text.preamble(statement)):
                if d.full_name and text.find_decl(rest, d.full_name) is None:
                    prefix = text.preamble(statement)  # the proof left out the problem's abbrevs: supply them
                    break
        body = prefix + rest
        line_shift = lines_before - prefix.count("\n")
        findings = soundness.scan(body) + soundness.redefinitions(statement, rest) if self.lexical else []
        findings = _not_in_the_statements_own(findings, statement, body)
        reasons += [_where(f, line_shift) + f.reason for f in findings]
        # the header is sent too: trusted for a benchmark, but `lean check`/`prove File.lean` take it from the file
        # (with the file's other, maybe sorry'd, declarations): what runs code or turns checks off is refused
        # there; a sorry or axiom the theorem uses from it shows in `#print axioms`
        header_findings = [f for f in soundness.scan(header) if f.dangerous
                           ] if self.lexical else []
        reasons += [f"in the header: {f.reason}" for f in header_findings]
        findings += header_findings
        changed = f"the statement of `{name}` was changed"
        differences = text.statement_differences(statement, body)
        text_changed = self.check_types and changed in differences  # the elaborated types decide
        reasons += [r for r in differences if not (text_changed and r == changed)]
        dangerous = any(f.dangerous for f in findings)
        answers, correct = ({}, None) if given else _produced_answers(problem, body)
        return Prepared(name, header, body, statement, line_shift, findings, reasons, run_lean=not dangerous,
                        statement_text_changed=text_changed, answers=answers, answer_correct=correct)

    # ---- in a worker --------------------------------------------------------------------------------
    def _run(self, session: Session, prep: Prepared, timeout_s: float | None = None) -> _Outcome:
        """In a worker: the proof, then (if it compiled) the axioms/type check and the cached reference type.
        Wall and CPU time cover these calls only (not the queue, not the header import)."""
        repl, t0, cpu = session.repl, time.monotonic(), 0.0
        try:
            body = repl.run_cmd(prep.body, session.env, timeout_s=timeout_s)
            cpu += repl.last_cpu_s
            check = reference = ref_error = None
            if body.ok:
                check = repl.run_cmd(check_command(prep.name), body.env, timeout_s=timeout_s)
                cpu += repl.last_cpu_s
                if self.check_types:
                    reference, ref_error, ref_cpu = self._reference(session, prep, timeout_s)
                    cpu += ref_cpu
            repl.assert_quiet()  # output after the last answer came from this proof: it fails this proof
        except ReplFailure as e:
            e.wall_s = e.wall_s if e.wall_s is not None else time.monotonic() - t0
            raise
        return _Outcome(body, check, reference, ref_error, time.monotonic() - t0, cpu)

    def _reference(self, session: Session, prep: Prepared,
                   timeout_s: float | None = None) -> tuple[str | None, str | None, float]:
        key = (prep.header, prep.statement)
        with self._ref_lock:
            if key in self._references:
                return (*self._references[key], 0.0)
        res = session.repl.run_cmd(reference_command(prep.statement, prep.name), session.env, timeout_s=timeout_s)
        if not res.ok:
            value: tuple[str | None, str | None] = (None, res.error or res.errors[0].data)
        else:
            infos = [m.data for m in res.messages if m.severity == "info"]
            value = (infos[-1] if infos else None, None if infos else "no #check output")
        with self._ref_lock:
            self._references[key] = value
        return (*value, session.repl.last_cpu_s)

    # ---- after Lean ---------------------------------------------------------------------------------
    def _collect(self, prep: Prepared, fut: Future, t0: float) -> Verdict:
        try:
            out: _Outcome = fut.result()
        except ReplFailure as e:
            return self._failure(e, getattr(e, "wall_s", time.monotonic() - t0))
        except HeaderRejected as e:
            return self._verdict(Status.FAILED, messages=e.result.messages, reasons=[str(e)])
        except PoolClosed as e:
            return self._verdict(Status.CRASHED, reasons=[machine_fault(e)], infra=True)
        except Exception as e:  # a bug in a task must still give every caller a verdict
            return self._verdict(Status.CRASHED, reasons=[f"verifier error: {type(e).__name__}: {e}"])
        return self._judge(prep, out, out.wall_s)

    def _failure(self, e: ReplFailure, wall: float) -> Verdict:
        # before the proof ran (the REPL would not start, its header would not import): nothing to judge it by
        verdict = self._proof_failure(e, wall) if e.phase == "call" else self._verdict(
            Status.CRASHED, reasons=[f"the Lean REPL failed before the proof ran: {e}"], wall=wall)
        if fault := machine_fault(e):
            verdict.infra = True
            verdict.reasons.append(f"infrastructure: {fault}")
        return verdict

    def _proof_failure(self, e: ReplFailure, wall: float) -> Verdict:
        if isinstance(e, ReplTimeout):
            return self._verdict(Status.TIMEOUT, reasons=[f"Lean timed out: {e}"], wall=wall)
        if isinstance(e, ReplOutOfMemory):
            return self._verdict(Status.CRASHED, reasons=[f"Lean went over its memory cap: {e}"], wall=wall)
        if isinstance(e, ReplGarbage):  # a proof can write to the REPL's stdout; what is not its answer fails it
            return self._verdict(Status.UNSOUND, reasons=[f"the REPL's output was not its answer to the proof: {e}"],
                                 wall=wall)
        tail = e.stderr_tail.strip().splitlines()[-1:] if e.stderr_tail else []
        return self._verdict(Status.CRASHED, reasons=[f"the Lean REPL failed: {e}"] + tail, wall=wall)

    def _judge(self, prep: Prepared, out: _Outcome, wall: float) -> Verdict:
        shift = prep.line_shift
        messages = [_shift_message(m, shift) for m in out.body.messages]
        sorries = [_shift_sorry(s, shift) for s in out.body.sorries]
        reasons = list(prep.reasons)
        axioms: list[str] = []
        failed = not out.body.ok
        if out.body.error:
            reasons.append(f"the REPL refused the proof: {out.body.error}")
        for m in messages:
            if m.severity == "error" and len(reasons) < 8:
                where = f"line {m.pos.line}: " if m.pos else ""
                reasons.append(f"error: {where}{m.data.splitlines()[0] if m.data else ''}")
        if sorries or any(SORRY_WARNING.search(m.data) for m in messages if m.severity == "warning"):
            if not any("sorry" in r for r in reasons):
                reasons.append("uses `sorry`")
        unsound = bool(reasons) and not failed
        if not failed and out.check is not None:
            check_reasons, axioms = self._judge_check(prep, out)
            reasons += check_reasons
            unsound = unsound or bool(check_reasons)
        status = Status.FAILED if failed else Status.UNSOUND if unsound else Status.PROVED
        verdict = self._verdict(status, messages, sorries, axioms, reasons, wall, out.cpu_s)
        verdict.answers, verdict.answer_correct = dict(prep.answers), prep.answer_correct
        return verdict

    def _judge_check(self, prep: Prepared, out: _Outcome) -> tuple[list[str], list[str]]:
        """The check's answer must be unambiguous: exactly one `#print axioms` answer, about the theorem itself,
        and exactly one type, of that very constant."""
        check = out.check
        assert check is not None
        if not check.ok:
            first = check.error or check.errors[0].data
            return [f"`{prep.name}` is not a top-level theorem of the proof ({first.splitlines()[0]})"], []
        infos = [m.data for m in check.messages if m.severity == "info"]
        answers = [a for a in map(parse_axioms_answer, infos) if a is not None]
        type_msgs = [d for d in infos if parse_axioms_answer(d) is None]
        if len(answers) != 1:
            return [f"`#print axioms` gave {len(answers)} answers, not exactly one"], []
        about, axioms = answers[0]
        if _unquote(about) != _unquote(prep.name):
            return [f"`#print axioms` answered about `{about}`, not `{prep.name}`"], axioms
        reasons = [AXIOM_REASONS.get(a, f"depends on the non-standard axiom `{a}`") for a in axioms
                   if a not in self.allowed_axioms]
        if not self.check_types:
            return reasons, axioms
        if out.reference_error:
            reasons.append(f"the problem's statement does not elaborate: {out.reference_error.splitlines()[0]}")
        elif len(type_msgs) != 1 or out.reference is None or not _is_type_of(type_msgs[0], prep.name):
            reasons.append("could not read the elaborated statement (exactly one `#check` answer about "
                           f"`{prep.name}` expected)")
        else:
            same = _type_text(type_msgs[0]) == _type_text(out.reference)
            if not same and prep.statement_text_changed:
                reasons.append(f"the statement of `{prep.name}` was changed (and its elaborated type differs)")
            elif not same:
                reasons.append("the statement was changed: its elaborated type differs from the problem's")
            elif "⋯" in type_msgs[0] or "⋯" in out.reference:  # pp elided part of it: not a proof of equality
                reasons.append(f"the elaborated statement of `{prep.name}` was printed in part (`⋯`): too long to "
                               "compare with the problem's")
        return reasons, axioms

    def _verdict(self, status: Status, messages: list[Message] | None = None, sorries: list[Sorry] | None = None,
                 axioms: list[str] | None = None, reasons: list[str] | None = None, wall: float = 0.0,
                 cpu: float = 0.0, infra: bool = False) -> Verdict:
        return Verdict(status, list(messages or []), list(sorries or []), list(axioms or []), list(reasons or []),
                       wall, cpu, self.lean_version, self.mathlib_version, infra=infra)


@dataclass(frozen=True)
class Preparer:
    """`Verifier.prepare` under one verifier's settings, as a picklable function: called on (problem, proof)
    items it returns what `Verifier.check_prepared` takes. Wherever it runs, the preparation is the very same
    code (a prepare-only `Verifier`, one per process and settings)."""

    lean_version: str | None
    mathlib_version: str | None
    allowed_axioms: frozenset[str]
    check_types: bool
    lexical: bool

    def __call__(self, items: list[tuple[LeanProblem, str]]) -> list[tuple[Prepared | Verdict, float]]:
        verifier = _PREPARING.get(self)
        if verifier is None:
            verifier = _PREPARING[self] = Verifier(None, lean_version=self.lean_version,
                                                   mathlib_version=self.mathlib_version,
                                                   allowed_axioms=self.allowed_axioms, check_types=self.check_types,
                                                   lexical=self.lexical)
        return list(self.stream(verifier, items))

    @staticmethod
    def stream(verifier: Verifier, items: Iterable[tuple[LeanProblem, str]]) -> Iterator[tuple[Prepared | Verdict,
                                                                                                float]]:
        for problem, proof_src in items:
            t0 = time.monotonic()
            yield verifier._prepare_safely(problem, proof_src), t0


_PREPARING: dict[Preparer, Verifier] = {}  # per process: the prepare-only verifier of each settings


def _not_in_the_statements_own(findings: list[Finding], statement: str, body: str) -> list[Finding]:
    """`findings` without those inside a declaration the problem's statement itself makes, unchanged (e.g. a
    PutnamBench `inductive` the theorem is about): that text is the problem's, not the proof's."""
    own = {d.full_name: text.normalize(statement[d.keyword:d.end]) for d in text.declarations(statement)}
    spans = []  # whole lines of those declarations (a line shared with the next command is not exempt)
    for d in text.declarations(body):
        if own.get(d.full_name) is None or own[d.full_name] != text.normalize(body[d.keyword:d.end]):
            continue
        first, last = body.count("\n", 0, d.start) + 1, body.count("\n", 0, d.end) + 1
        shares_first = body[body.rfind("\n", 0, d.start) + 1:d.start].strip() != ""
        spans.append((first + shares_first, last if d.end >= len(body) else last - 1))
    return [f for f in findings if not any(a <= f.line <= b for a, b in spans)]


def _drop_repeated_header(rest: str, header_rest: str) -> str:
    """`rest` without a leading copy of the header's options/opens/defs (a completion that repeats the whole
    prompt): they already ran in the header environment, and running a header `def` twice is an error."""
    want = [ln.strip() for ln in text.lean_lines(text.strip_comments(header_rest)) if ln.strip()]
    if not want:
        return rest
    masked = text.strip_comments(rest)
    offset, i = 0, 0
    for line, raw in zip(text.lean_lines(masked), text.lean_lines(rest), strict=True):
        if line.strip():
            if line.strip() != want[i]:
                return rest
            i += 1
        offset += len(raw)
        if i == len(want):
            tail = rest[offset:]
            return tail.lstrip("\n") if tail.strip() else tail
    return rest


def _where(f: Finding, shift: int) -> str:
    if not f.line:
        return ""
    line = f.line + shift
    return f"line {line}: " if line >= 1 else "in the problem's preamble (its answer abbrev), which the proof left out: "


def _unquote(name: str) -> str:
    return name.replace("«", "").replace("»", "").removeprefix("_root_.")


def _is_type_of(data: str, name: str) -> bool:
    """Whether a `#check @NAME` answer is about the constant NAME (`@NAME : …` or `NAME : …`)."""
    head = _unquote(data.split(" :", 1)[0].strip().removeprefix("@"))
    return head == _unquote(name)


# a binder keyword, not the end of a name (`Foo.myfun x` binds nothing)
_BINDER_OPEN = re.compile(r"(?<![\w'.!?])(?:∀|fun|λ|∃|∃!|let|Π|Σ)\s")
_BINDER_NAME = re.compile(r"[^\s(){}\[\]⦃⦄,:=]+")
_BRACKET = re.compile(r"[(\[{⦃⟨)\]}⦄⟩]")


def _type_text(data: str) -> str:
    """A `pp.all` type as compared: whitespace collapsed, bound variables renamed in order of binding, so the
    same type with other hypothesis or variable names compares equal (alpha-equivalence, as the kernel sees it).
    Where a bound name also stands free (a constant outside every binder of that name), renaming would make the
    two one: such a type is compared as printed."""
    flat = re.sub(r"\s+", " ", data).strip()
    binders = [(name, m.start()) for m in _BINDER_OPEN.finditer(flat) for name in _binder_names(flat, m.end())]
    if not binders or _bound_name_stands_free(flat, binders):
        return flat
    names: dict[str, str] = {}
    for name, _ in binders:
        names.setdefault(name, f"⟪{len(names)}⟫")
    return _BINDER_NAME.sub(lambda m: names.get(m.group(), m.group()), flat)


def _bound_name_stands_free(s: str, binders: list[tuple[str, int]]) -> bool:
    """Whether a token named like one of `binders` ((name, offset of its binder keyword)) lies outside the scope of
    every binder of that name. A binder's scope is taken to run to the end of the bracket group it stands in."""
    marks = sorted([(m.start(), m.group()) for m in _BRACKET.finditer(s)] + [(at, "") for _, at in binders])
    stack: list[int] = []
    enclosing: dict[int, int | None] = {}  # binder offset -> offset of the bracket it stands in
    closes: dict[int, int] = {}
    for at, c in marks:
        if not c:
            enclosing[at] = stack[-1] if stack else None
        elif c in "([{⦃⟨":
            stack.append(at)
        elif stack:
            closes[stack.pop()] = at
    scopes: dict[str, list[tuple[int, int]]] = {}
    for name, at in binders:
        group = enclosing[at]
        scopes.setdefault(name, []).append((at, closes.get(group, len(s)) if group is not None else len(s)))
    return any(m.group() in scopes and not any(a <= m.start() < b for a, b in scopes[m.group()])
               for m in _BINDER_NAME.finditer(s))


def _binder_names(s: str, i: int) -> list[str]:
    """The names bound by the binder groups starting at `i` (`(x y : T) {z : U} [inst : C] w =>`)."""
    out: list[str] = []
    n = len(s)
    while i < n:
        while i < n and s[i] == " ":
            i += 1
        if i < n and s[i] in "({[⦃":
            close = {"(": ")", "{": "}", "[": "]", "⦃": "⦄"}[s[i]]
            colon = s.find(" : ", i)
            end = s.find(close, i)
            if colon < 0 or end < 0 or colon > end:
                return out
            out += [w for w in s[i + 1:colon].split() if _BINDER_NAME.fullmatch(w)]
            depth, j = 0, i
            while j < n:
                depth += (s[j] in "({[⦃") - (s[j] in ")}]⦄")
                j += 1
                if depth == 0:
                    break
            i = j
        else:
            m = _BINDER_NAME.match(s, i)
            if not m or m.group() in ("=>", "↦"):
                return out
            out.append(m.group())
            i = m.end()
            if s.startswith(" :", i) or s.startswith(",", i):
                return out


def _remove_given_answers(statement: str, rest: str) -> tuple[str, list[str]]:
    """Answer given: `rest` without the answer abbrevs it repeats exactly (the verifier puts the statement's own,
    recorded, ones first); a proof that gives an answer of its own is rejected (it would prove something else)."""
    reasons: list[str] = []
    for want in text.declarations(text.preamble(statement)):
        got = text.find_decl(rest, want.full_name) if want.full_name else None
        if got is None:
            continue
        if text.normalize(rest[got.keyword:got.end]) != text.normalize(statement[want.keyword:want.end]):
            reasons.append(f"declares its own `{want.full_name}`: with the answer given, the verifier places the "
                           "recorded answer and a proof may only repeat it")
            continue
        rest = _lift_declarations(rest, [want.full_name])[0]
    return rest, reasons


def _as_the_problem_declares(problem: LeanProblem, rest: str) -> list[str]:
    """Answer produced: the preamble declarations (in the problem's order) that `rest` declares as the problem does:
    each one whose value the problem fixes (a changed one is a statement difference), and each answer abbrev whose
    value is the recorded answer."""
    statement = problem.formal_statement
    recorded = (problem.extra or {}).get("answers") or {}
    names = []
    for d in text.declarations(text.preamble(statement)):
        if not d.full_name:
            continue
        if text.normalize(text.decl_value(statement, d)) == "sorry":  # an answer: lifted when it is the recorded one
            got, rec = text.find_decl(rest, d.full_name), recorded.get(d.full_name)
            if got is None or rec is None or text.normalize(text.decl_value(rest, got)) != text.normalize(
                    rec["answer"] if isinstance(rec, dict) else str(rec)):
                continue
        names.append(d.full_name)
    return names


def _lift_declarations(rest: str, names: list[str]) -> tuple[str, str]:
    """(`rest` with the declarations `names` blanked out, their text in that order): each with its attributes,
    modifiers and doc comment; blank lines keep the line numbers of what follows."""
    lifted = ""
    for name in names:
        d = text.find_decl(rest, name)
        if d is None:
            continue
        start = d.start
        doc = [t for t in text.tokens(rest[:d.start]) if t.kind in text.COMMENT_KINDS]
        if doc and doc[-1].kind == "doc" and not rest[doc[-1].end:d.start].strip():
            start = doc[-1].start
        piece = rest[start:d.end]
        lifted += piece.rstrip() + "\n"
        rest = rest[:start] + "\n" * piece.count("\n") + rest[d.end:]
    return rest, lifted


def _produced_answers(problem: LeanProblem, body: str) -> tuple[dict[str, str], bool | None]:
    """Answer produced: the value the proof gives each answer abbrev, and whether all are the recorded ones."""
    recorded = (problem.extra or {}).get("answers") or {}
    produced: dict[str, str] = {}
    for name in text.answer_names(problem):
        d = text.find_decl(body, name)
        if d is not None:
            produced[name] = re.sub(r"\s+", " ", text.strip_comments(text.decl_value(body, d))).strip()
    if not produced or not recorded:
        return produced, None
    def value(rec: Any) -> str:
        return text.normalize(rec["answer"] if isinstance(rec, dict) else str(rec))
    correct = all(name in produced and text.normalize(produced[name]) == value(rec) for name, rec in recorded.items())
    return produced, correct


def _shift_pos(p: Pos | None, shift: int) -> Pos | None:
    return Pos(p.line + shift, p.column) if p and shift and p.line else p


def _shift_message(m: Message, shift: int) -> Message:
    return Message(m.severity, m.data, _shift_pos(m.pos, shift), _shift_pos(m.end_pos, shift))


def _shift_sorry(s: Sorry, shift: int) -> Sorry:
    return Sorry(s.goal, _shift_pos(s.pos, shift), _shift_pos(s.end_pos, shift), s.proof_state)

