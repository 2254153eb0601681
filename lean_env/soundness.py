"""Lexical soundness scan of untrusted Lean text: the loopholes a proof must not use, found before Lean runs.

The scan reads tokens of THE lexer (`text.tokens`, as Lean's own tokenizer reads the text), in every reading of
its string literals (`text.readings`), so `-- sorry` or `"sorry"` is never flagged while `s!"{sorry}"`,
`«sorry»` or a command after `open … in` is. It is the first layer of several (docs/lean_env.md): Lean's own
messages, `#print axioms` of the theorem and its elaborated statement (in `verifier.py`) catch what text cannot.

Each `Finding.kind` is one of `KINDS`. `DANGEROUS` kinds run code at elaboration time or switch off the kernel:
the verifier rejects them without running Lean at all. The others (sorry and friends) are rejected too, but
Lean still runs so the verdict carries the goals of the sorries (decomposition uses them).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lean_env import text

KINDS = (
    "sorry",  # sorry / admit / sorryAx / `stop` / apply? (which admits the goal when it finds nothing)
    "axiom",  # a new axiom
    "native",  # native_decide, decide +native, Lean.ofReduceBool / ofReduceNat / trustCompiler
    "implemented_by",  # @[implemented_by] / @[extern]: replace a definition's code with unchecked code
    "kernel_option",  # set_option debug.skipKernelTC and other checking-off options; pp.*; options writing files
    "unsafe",  # unsafe declarations / unsafeCast & co
    "metaprogram",  # #eval, run_cmd, macro, elab, syntax, initialize, Lean.Meta/Elab/IO APIs: code run at elaboration
    "exit",  # #exit: the rest of the file is silently ignored
    "hidden_text",  # bidi controls anywhere; invisible characters in code
    "import",  # an import inside the body (only the problem's header may import)
    "redefinition",  # the proof declares a name the statement uses (see `redefinitions`)
    "inductive",  # a new inductive type / structure / class: the route of known kernel soundness bugs
    "scope",  # what acts on the verifier's check after the proof: #guard_msgs, a leftover variable, an open scope
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


_META = "runs meta code (`run_cmd`/`run_elab`/`run_meta`/`run_tac`/`by_elab`)"
_SYNTAX = "defines syntax, macros, elaborators or initializers (can rewrite what Lean checks)"
_INDUCTIVE = ("declares a new inductive type or structure (the route of known kernel soundness bugs; competition "
              "proofs need none)")
# Whole identifiers (keywords included), wherever they stand: a command keyword after `open … in` on the same
# line, or indented, runs as well as one at the start of a line. They must not follow a `.` (`h.stop` is a field).
WORDS: dict[str, tuple[str, str]] = {
    "sorry": ("sorry", "uses `sorry`"),
    "admit": ("sorry", "uses `admit` (sorry)"),
    "stop": ("sorry", "uses `stop`, which admits the rest of the proof"),
    "apply?": ("sorry", "uses `apply?`, which closes a goal it cannot solve with sorry"),
    "axiom": ("axiom", "declares a new `axiom`"),
    "native_decide": ("native", "uses `native_decide` (trusts the compiler: Lean.ofReduceBool)"),
    **dict.fromkeys(("bv_decide", "bv_check"), ("native", "uses `bv_decide`/`bv_check`, which trust the compiler "
                                                   "(Lean.ofReduceBool)")),
    "implemented_by": ("implemented_by", "uses `@[implemented_by]` (unchecked implementation)"),
    **dict.fromkeys(("run_cmd", "run_elab", "run_meta", "run_tac", "run_conv", "by_elab"), ("metaprogram", _META)),
    **dict.fromkeys(("macro", "macro_rules", "syntax", "elab", "elab_rules", "declare_syntax_cat", "initialize",
                     "builtin_initialize", "simproc", "dsimproc", "simproc_decl", "dsimproc_decl", "builtin_simproc",
                     "register_simp_attr", "declare_config_elab"), ("metaprogram", _SYNTAX)),
    **dict.fromkeys(("inductive", "coinductive", "structure", "class", "mutual"), ("inductive", _INDUCTIVE)),
}
# Components of a name, wherever they stand in it (`Lean.ofReduceBool`, `_root_.sorryAx`, `IO.println`).
QUALIFIED: dict[str, tuple[str, str]] = {
    "sorryAx": ("sorry", "uses `sorryAx`"),
    **dict.fromkeys(("admitGoal", "mkSorry", "mkLabeledSorry"), ("sorry", "builds a sorry by hand")),
    **dict.fromkeys(("ofReduceBool", "ofReduceNat", "trustCompiler"),
                    ("native", "uses a compiler-trusting axiom (Lean.ofReduceBool / ofReduceNat / trustCompiler)")),
    # `open Lean` makes them reachable unqualified; no honest proof names them
    **dict.fromkeys(("reduceBool", "reduceNat"),
                    ("native", "uses Lean.reduceBool / reduceNat (evaluated by the compiler, not the kernel)")),
    **dict.fromkeys(("ptrAddrUnsafe", "withPtrAddr", "ptrEq"), ("unsafe", "uses pointer tricks")),
    **dict.fromkeys(("addDecl", "addAndCompile", "modifyEnv", "setEnv", "replaceConst", "evalConst", "compileDecl",
                     "mkAuxTheorem", "mkAuxDefinition", "mkAuxLemma", "withOptions", "skipKernelTC"),
                    ("metaprogram", "manipulates the environment or the checker's options directly")),
    # the monads of meta code and of IO: nothing in a competition proof runs in them
    **dict.fromkeys(("IO", "EIO", "BaseIO", "MetaM", "CoreM", "TermElabM", "TacticM", "CommandElabM"),
                    ("metaprogram", "runs IO or meta code (IO / MetaM / TermElabM / TacticM / CommandElabM)")),
}
# attributes that register meta code (elaborators, macros, delaborators, extensions): flagged at any bracket depth of
# an attribute list (`@[simp [x], command_elab …]` too); `delab`/`app_unexpander` run while `#check` prints the type
META_ATTRIBUTES = frozenset({"command_elab", "term_elab", "tactic", "macro", "init", "env_linter", "command_parser",
                             "term_parser", "tactic_parser", "delab", "app_delab", "app_unexpander", "simproc",
                             "norm_num", "positivity", "aesop"})
# Lean's metaprogramming namespaces, reached as `Lean.X…` (or through `open Lean`, which is flagged itself)
LEAN_META = frozenset({"Meta", "Elab", "Core", "Environment", "Kernel", "Compiler", "IR", "Parser",
                       "PrettyPrinter", "Server", "Language"})
# `#` commands: prefix -> (kind, reason). Lean's token table matches the longest `#…` token, so `#evalx` runs #eval.
HASH_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("#eval", "metaprogram", "runs code with `#eval`"),
    ("#exit", "exit", "uses `#exit` (the rest of the file is not checked)"),
    ("#guard_msgs", "scope", "uses `#guard_msgs`, which swallows the messages (errors included) of what follows"),
    ("#guard", "metaprogram", "runs code with `#guard`"),
    ("#print", "", ""), ("#check", "", ""), ("#reduce", "", ""), ("#synth", "", ""), ("#simp", "", ""),
    ("#norm_num", "", ""), ("#find", "", ""), ("#help", "", ""), ("#conv", "", ""), ("#whnf", "", ""),
    ("#", "metaprogram", "uses a `#` command a competition proof has no need of"),
)

_RULES: list[tuple[str, str, str]] = [
    # (kind, regex on the masked text, reason): what is more than one identifier
    # `+native` wherever it stands in a configuration (`decide -kernel +native` too)
    ("native", r"\+\s*native\b|\bnative\s*:=\s*true\b",
     "uses `decide +native` (trusts the compiler: Lean.ofReduceBool)"),
    ("metaprogram", r"(?<![\w'.!?])eval\s*%", "runs code with `eval%` (evaluated by the compiler at elaboration)"),
    ("implemented_by", r"(?:@|\battribute\s*)\[[^\]]*(?<![\w'.!?])extern(?![\w'!?])",
     "uses `@[extern]` (unchecked implementation)"),
    # delab / app_unexpander run while `#check` prints the type, so they could forge what the verifier compares
    ("metaprogram", r"(?:@|\battribute\s*)\[[^\]]*(?<![\w'.!?])(?:command_elab|term_elab|tactic|macro|builtin_\w+|"
     r"init|env_linter|command_parser|term_parser|tactic_parser|delab|app_delab|app_unexpander|simproc|"
     r"norm_num|positivity|aesop)(?![\w'!?])",
     "registers meta code through an attribute"),
]
_COMPILED = [(k, re.compile(rx), reason) for k, rx, reason in _RULES]

# set_option names that turn checking off or make the elaborator trust unchecked code
_BAD_OPTION = re.compile(r"^(debug\.|bootstrap\.|interpreter\.|allowUnsafeReducibility$|compiler\.)")
# pp.* set in the proof outlives the verifier's `set_option pp.all true in #check`: an explicit pp.notation /
# pp.explicit / pp.maxSteps ... wins over pp.all and could make a changed statement print like the problem's
_PP_OPTION = re.compile(r"^pp\.")
# options that make Lean write files where the proof says: model output must not reach the verifying machine's disk
_FILE_OPTION = re.compile(r"^trace\.profiler\.output")
# Trojan-source controls: they reorder how text displays, so they are refused even inside comments and strings
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def scan(src: str) -> list[Finding]:
    """Every loophole found in `src`, in text order (empty for an honest proof). `src` must be exactly the text
    Lean is sent; it is read the ways Lean's lexer can read it (`text.readings`) and what any reading shows counts."""
    raw = src.lstrip("\ufeff")
    findings: list[Finding] = []
    m = _BIDI.search(raw)
    if m:
        findings.append(Finding("hidden_text", f"contains a bidirectional control character U+{ord(m.group()):04X}",
                                _line(raw, m.start())))
    imports_end = len(text.split_imports(raw)[0])
    seen: list[tuple[text.Token, ...]] = []
    for mode, toks in zip(("lean", "all", "none"), text.readings(raw), strict=True):
        if any(toks is other or toks == other for other in seen):
            continue  # the same tokens read the same way (no string literal tells the readings apart)
        seen.append(toks)
        findings += _scan_tokens(raw, [t for t in toks if t.kind in text.CODE_KINDS], imports_end)
        masked = text.mask(raw, interpolation=mode)
        for kind, rx, reason in _COMPILED:
            findings += [Finding(kind, reason, _line(raw, m.start())) for m in rx.finditer(masked)]
    findings.sort(key=lambda f: f.line)
    return _dedupe(findings)


def _scope_name(toks: list[text.Token], words: list[str], k: int, src: str) -> str:
    """The name after `namespace`/`section`/`end` at token `k` (on the same line), "" when there is none."""
    if k + 1 < len(toks) and toks[k + 1].kind == "ident" and "\n" not in src[toks[k].end:toks[k + 1].start]:
        return ".".join(text.ident_parts(words[k + 1]))
    return ""


def _line(src: str, at: int) -> int:
    return src.count("\n", 0, at) + 1


def _scan_tokens(src: str, toks: list[text.Token], imports_end: int) -> list[Finding]:
    out: list[Finding] = []
    words = [src[t.start:t.end] for t in toks]
    stack: list[list[int]] = [[]]  # per open scope: the lines of the `variable`s declared in it
    attr_depth = 0  # inside `@[…]` / `attribute […]`
    scope_lines: list[tuple[str, int]] = []
    for k, (t, w) in enumerate(zip(toks, words, strict=True)):

        def add(kind: str, reason: str, at: int = t.start) -> None:
            out.append(Finding(kind, reason, _line(src, at)))

        if t.kind == "symbol" and (unicodedata.category(w)[0] in "CZ" or w in "\u00ad"):
            add("hidden_text", f"contains an invisible character U+{ord(w):04X} in code")
        elif t.kind == "command":
            kind, reason = next((kd, r) for prefix, kd, r in HASH_COMMANDS if w.startswith(prefix))
            if kind:
                add(kind, reason)
        if w == "[" and t.kind == "symbol" and (attr_depth or (k and words[k - 1] in ("@", "attribute"))):
            attr_depth += 1
        elif w == "]" and attr_depth:
            attr_depth -= 1
        if t.kind != "ident":
            continue
        parts = text.ident_parts(w)
        if attr_depth and len(parts) == 1 and (parts[0] in META_ATTRIBUTES or parts[0].startswith("builtin_")):
            add("metaprogram", "registers meta code through an attribute")
        elif attr_depth and parts == ["extern"]:
            add("implemented_by", "uses `@[extern]` (unchecked implementation)")
        if [p for p in parts if p != "_root_"] == ["Lean"]:  # `open Nat Lean`, `export Lean (…)`
            add("metaprogram", "names the `Lean` namespace (its metaprogramming API)")
        after_dot = k > 0 and words[k - 1] == "." and toks[k - 1].end == t.start
        if not after_dot and len(parts) == 1 and parts[0] in WORDS:
            add(*WORDS[parts[0]])
        for i, p in enumerate(parts):
            if p in QUALIFIED:
                add(*QUALIFIED[p])
            if p.startswith("unsafe") and not (after_dot and i == 0):
                add("unsafe", "uses `unsafe` code")
            if p in LEAN_META and i > 0 and parts[i - 1] == "Lean":
                add("metaprogram", f"uses Lean.{p} (metaprogramming: runs code at elaboration time)")
        nxt = words[k + 1] if k + 1 < len(words) else ""
        if w in ("open", "export", "namespace") and text.ident_parts(nxt)[:1] == ["Lean"]:
            add("metaprogram", f"`{w} {nxt}` reaches Lean's metaprogramming API unqualified")
        elif w == "import" and t.start >= imports_end:
            add("import", "imports after the header (only the problem's header may import)")
        elif w == "set_option" and toks[k + 1:k + 2] and toks[k + 1].kind == "ident":
            name = ".".join(text.ident_parts(nxt))
            why = ("weakens checking" if _BAD_OPTION.match(name)
                   else "changes how the verifier prints the statement it compares" if _PP_OPTION.match(name)
                   else "writes a file on the verifying machine" if _FILE_OPTION.match(name)
                   else None)
            if why:
                add("kernel_option", f"sets `{name}`, which {why}")
        elif w in ("namespace", "section"):
            for _ in range(text.scope_depth(_scope_name(toks, words, k, src))):
                stack.append([])
                scope_lines.append((w, _line(src, t.start)))
        elif w == "end" and len(stack) > 1:
            for _ in range(min(len(stack) - 1, text.scope_depth(_scope_name(toks, words, k, src)))):
                stack.pop()
                scope_lines.pop()
        elif w == "variable":
            stack[-1].append(_line(src, t.start))
    for line in stack[0]:
        out.append(Finding("scope", "leaves a `variable` in scope at the end (it can change what the verifier's "
                           "check of the theorem reads)", line))
    for kind, line in scope_lines:
        out.append(Finding("scope", f"leaves a `{kind}` open at the end (the verifier's check would run inside it)",
                           line))
    return out


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
