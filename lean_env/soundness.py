"""Lexical soundness scan of untrusted Lean text: the loopholes a proof must not use, found before Lean runs.

The scan reads the text with comments and string literals blanked (`text.mask`), «quoted» names unquoted,
so `-- sorry` or `"sorry"` is never flagged and `«sorry»` or `set_option «debug».skipKernelTC` is. It is the
first of three layers (docs/lean_env.md): Lean's own messages and sorries, `#print axioms` of the theorem,
and the elaborated statement compared with the problem's (in `verifier.py`) catch what text cannot.

Each `Finding.kind` is one of `KINDS`. `DANGEROUS` kinds run code at elaboration time or switch off the kernel:
the verifier rejects them without running Lean at all. The others (sorry and friends) are rejected too, but
Lean still runs so the verdict carries the goals of the sorries (decomposition uses them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lean_env import text

KINDS = (
    "sorry",  # sorry / admit / sorryAx / `stop` / apply? (which admits the goal when it finds nothing)
    "axiom",  # a new axiom
    "native",  # native_decide, decide +native, Lean.ofReduceBool / ofReduceNat / trustCompiler
    "implemented_by",  # @[implemented_by] / @[extern]: replace a definition's code with unchecked code
    "kernel_option",  # set_option debug.skipKernelTC and other checking-off options; pp.* (see _PP_OPTION)
    "unsafe",  # unsafe declarations / unsafeCast & co
    "metaprogram",  # #eval, run_cmd, macro, elab, syntax, initialize, env hacking: code run at elaboration
    "exit",  # #exit: the rest of the file is silently ignored
    "hidden_text",  # bidi controls / zero-width characters that make the text read differently than it parses
    "import",  # an import inside the body (only the problem's header may import)
    "redefinition",  # the proof declares a name the statement uses (see `redefinitions`)
    "inductive",  # a new inductive type / structure / class: the route of known kernel soundness bugs
)
DANGEROUS = frozenset({"native", "implemented_by", "kernel_option", "unsafe", "metaprogram", "exit",
                       "hidden_text", "import"})


@dataclass(frozen=True)
class Finding:
    kind: str
    reason: str
    line: int = 0  # 1-based line of the match (0: whole text)

    @property
    def dangerous(self) -> bool:
        return self.kind in DANGEROUS


_W = r"(?<![\w'.!?])"  # not inside a longer identifier (Lean identifiers take ', !, ? and dots)
_E = r"(?![\w'!?])"
_ATTR = r"(?:@|\battribute\s*)\["  # an attribute list: `@[a] def f` or, after the fact, `attribute [a] f`

# Single identifiers, matched on whole tokens (one pass over the text). WORDS must not follow a dot
# (`h.stop` is a field); QUALIFIED may (`Lean.ofReduceBool`).
WORDS: dict[str, tuple[str, str]] = {
    "sorry": ("sorry", "uses `sorry`"),
    "admit": ("sorry", "uses `admit` (sorry)"),
    "stop": ("sorry", "uses `stop`, which admits the rest of the proof"),
    "apply?": ("sorry", "uses `apply?`, which closes a goal it cannot solve with sorry"),
    "axiom": ("axiom", "declares a new `axiom`"),
    "native_decide": ("native", "uses `native_decide` (trusts the compiler: Lean.ofReduceBool)"),
    "implemented_by": ("implemented_by", "uses `@[implemented_by]` (unchecked implementation)"),
    "run_cmd": ("metaprogram", "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`by_elab`)"),
    "run_elab": ("metaprogram", "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`by_elab`)"),
    "run_meta": ("metaprogram", "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`by_elab`)"),
    "run_tac": ("metaprogram", "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`by_elab`)"),
    "by_elab": ("metaprogram", "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`by_elab`)"),
}
QUALIFIED: dict[str, tuple[str, str]] = {
    "sorryAx": ("sorry", "uses `sorryAx`"),
    **dict.fromkeys(("admitGoal", "mkSorry", "mkLabeledSorry"), ("sorry", "builds a sorry by hand")),
    **dict.fromkeys(("ofReduceBool", "ofReduceNat", "trustCompiler"),
                    ("native", "uses a compiler-trusting axiom (Lean.ofReduceBool / ofReduceNat / trustCompiler)")),
    # `open Lean` makes them reachable unqualified; no honest proof names them
    **dict.fromkeys(("reduceBool", "reduceNat"),
                    ("native", "uses Lean.reduceBool / reduceNat (evaluated by the compiler, not the kernel)")),
    **dict.fromkeys(("ptrAddrUnsafe", "withPtrAddr", "ptrEq"), ("unsafe", "uses pointer tricks")),
    **dict.fromkeys(("addDecl", "addAndCompile", "modifyEnv", "setEnv", "replaceConst", "evalConst", "compileDecl"),
                    ("metaprogram", "manipulates the environment directly")),
}
LEAN_QUALIFIED = {"Kernel"}  # only as `Lean.Kernel`: a bare `Kernel` is too common a word
_IDENT = re.compile(r"[^\W\d][\w'!?]*")

_RULES: list[tuple[str, str, str]] = [
    # (kind, regex on the masked text, reason): what is more than one identifier
    ("native", r"\bdecide\s*\+\s*native\b|\bnative\s*:=\s*true\b",
     "uses `decide +native` (trusts the compiler: Lean.ofReduceBool)"),
    ("implemented_by", rf"{_ATTR}[^\]]*{_W}extern{_E}", "uses `@[extern]` (unchecked implementation)"),
    ("metaprogram", r"#eval\b|#eval!", "runs code with `#eval`"),
    ("exit", r"#exit\b", "uses `#exit` (the rest of the file is not checked)"),
    ("metaprogram", rf"(?m)^[ \t]*(?:@\[[^\]]*\]\s*)?(?:(?:scoped|local|private|protected)\s+)*"
     rf"(?:macro|macro_rules|syntax|elab|elab_rules|declare_syntax_cat|initialize|builtin_initialize|"
     rf"simproc|dsimproc|simproc_decl|dsimproc_decl|builtin_simproc){_E}",
     "defines syntax, macros, elaborators or initializers (can rewrite what Lean checks)"),
    # delab / app_unexpander run while `#check` prints the type, so they could forge what the verifier compares
    ("metaprogram", rf"{_ATTR}[^\]]*{_W}(?:command_elab|term_elab|tactic|macro|builtin_\w+|init|env_linter|"
     rf"command_parser|term_parser|tactic_parser|delab|app_delab|app_unexpander){_E}",
     "registers meta code through an attribute"),
    ("inductive", rf"(?m)^[ \t]*(?:@\[[^\]]*\]\s*)?(?:(?:private|protected|unsafe|noncomputable)\s+)*"
     rf"(?:inductive|coinductive|structure|class(?:\s+inductive)?|mutual){_E}",
     "declares a new inductive type or structure (the route of known kernel soundness bugs; competition "
     "proofs need none)"),
    ("import", r"(?m)^[ \t]*import\s", "imports after the header (only the problem's header may import)"),
]
_COMPILED = [(k, re.compile(rx), reason) for k, rx, reason in _RULES]

# set_option names that turn checking off or make the elaborator trust unchecked code
_BAD_OPTION = re.compile(r"^(debug\.|bootstrap\.|interpreter\.|allowUnsafeReducibility$)")
# pp.* set in the proof outlives the verifier's `set_option pp.all true in #check`: an explicit pp.notation /
# pp.explicit / pp.maxSteps ... wins over pp.all and could make a changed statement print like the problem's
_PP_OPTION = re.compile(r"^pp\.")
_SET_OPTION = re.compile(r"\bset_option\s+([\w.'«»]+)")
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")


def scan(src: str) -> list[Finding]:
    """Every loophole found in `src`, in text order (empty for an honest proof)."""
    findings: list[Finding] = []
    raw = src.lstrip("\ufeff")
    for m in _HIDDEN.finditer(raw):
        findings.append(Finding("hidden_text", f"contains an invisible character U+{ord(m.group()):04X}",
                                raw.count("\n", 0, m.start()) + 1))
        break
    imports, _ = text.split_imports(raw)
    masked = text.mask(raw).replace("«", "").replace("»", "")
    for m in _IDENT.finditer(masked):
        word, at = m.group(), m.start()
        after_dot = at > 0 and masked[at - 1] == "."
        hit = (WORDS.get(word) if not after_dot else None) or QUALIFIED.get(word)
        if hit is None and word.startswith("unsafe") and not after_dot:
            hit = ("unsafe", "uses `unsafe` code")
        if hit is None and word in LEAN_QUALIFIED and masked[max(0, at - 5):at] == "Lean.":
            hit = ("metaprogram", f"uses Lean.{word} (reaches into the kernel from the proof)")
        if hit:
            findings.append(Finding(hit[0], hit[1], masked.count("\n", 0, at) + 1))
    for kind, rx, reason in _COMPILED:
        for m in rx.finditer(masked):
            if kind == "import" and m.start() < len(imports):
                continue  # the leading import block is the header's business
            findings.append(Finding(kind, reason, masked.count("\n", 0, m.start()) + 1))
    for m in _SET_OPTION.finditer(masked):
        name = m.group(1)
        why = ("weakens checking" if _BAD_OPTION.match(name)
               else "changes how the verifier prints the statement it compares" if _PP_OPTION.match(name) else None)
        if why:
            findings.append(Finding("kernel_option", f"sets `{name}`, which {why}",
                                    masked.count("\n", 0, m.start()) + 1))
    findings.sort(key=lambda f: f.line)
    return _dedupe(findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, int]] = set()
    out = []
    for f in findings:
        key = (f.kind, f.reason, f.line)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def redefinitions(statement: str, body: str) -> list[Finding]:
    """Declarations of `body` that reuse a name the problem's statement mentions (other than the statement's
    own declarations): redefining what the theorem talks about, whatever namespace it is hidden in."""
    own = {d.full_name for d in text.declarations(statement)}
    masked = text.mask(statement).replace("«", "").replace("»", "")
    mentioned = set(re.findall(r"[A-Za-z_][\w'.]*[\w']|[A-Za-z_]", masked))
    out: list[Finding] = []
    for d in text.declarations(body):
        if d.full_name in own or not d.name or d.kind == "example":
            continue
        for s in mentioned:
            if s in own or len(s) < 2:
                continue
            if d.name == s or d.full_name == s or s.endswith("." + d.name) or d.full_name.endswith("." + s):
                line = body.count("\n", 0, d.keyword) + 1
                out.append(Finding("redefinition", f"declares `{d.full_name}`, which redefines `{s}` that the "
                                   "statement uses", line))
                break
    return out
