"""Lean 4 source text utilities: comment/string masking, header split, declarations, statements, code blocks.

Everything here is lexical (no Lean needed) and position-preserving: `mask` blanks comments and string/char
literals with spaces (newlines kept), so offsets found in the masked text are offsets in the source.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_IDENT_CHAR = re.compile(r"[\w'!?₀-₉ₐ-ₜᵢ-ᵪ]")


def _is_ident_char(c: str) -> bool:
    return bool(c) and bool(_IDENT_CHAR.match(c))


_BLOCK_COMMENT = re.compile(r"/-|-/")
_LITERAL_START = re.compile(r'--|/-|«|"|\'|(?<![\w\'!?])r#*"')


def literal_spans(src: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every comment (nested `/- -/`, `--`), string literal and char literal."""
    spans: list[tuple[int, int, str]] = []
    n, i = len(src), 0
    while i < n:
        m = _LITERAL_START.search(src, i)
        if m is None:
            break
        i, tok = m.start(), m.group()
        if tok == "--":
            j = src.find("\n", i)
            j = n if j < 0 else j
            spans.append((i, j, "comment"))
            i = j
        elif tok == "/-":
            depth, j = 1, i + 2
            while depth:
                k = _BLOCK_COMMENT.search(src, j)
                if k is None:
                    j = n
                    break
                depth += 1 if k.group() == "/-" else -1
                j = k.end()
            spans.append((i, j, "comment"))
            i = j
        elif tok == "«":  # «quoted identifier»: not a literal, but nothing inside it starts one
            j = src.find("»", i + 1)
            i = n if j < 0 else j + 1
        elif tok == "'":
            c = _CHAR_LIT.match(src, i) if not _is_ident_char(src[i - 1] if i else "") else None
            if c:
                spans.append((i, c.end(), "char"))
                i = c.end()
            else:
                i += 1
        else:  # a string: "..." or r#"..."#
            j = _string_end(src, i)
            spans.append((i, j, "string"))
            i = j
    return spans


_CHAR_LIT = re.compile(r"'(\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)|[^\\'\n])'")


@lru_cache(maxsize=512)
def mask(src: str, kinds: tuple[str, ...] = ("comment", "string", "char")) -> str:
    """`src` with comments and string/char literals (those of `kinds`) replaced by spaces, newlines kept."""
    out = list(src)
    for a, b, kind in literal_spans(src):
        if kind in kinds:
            for k in range(a, b):
                if out[k] != "\n":
                    out[k] = " "
    return "".join(out)


def _string_end(src: str, i: int) -> int:
    """Offset just past the string literal starting at `i` (plain with escapes, or raw `r#"..."#`)."""
    n = len(src)
    if src[i] == "r":
        hashes = len(src[i + 1:]) - len(src[i + 1:].lstrip("#"))
        close = '"' + "#" * hashes
        j = src.find(close, i + 2 + hashes)
        return n if j < 0 else j + len(close)
    j = i + 1
    while j < n:
        if src[j] == "\\":
            j += 2
        elif src[j] == '"':
            return j + 1
        else:
            j += 1
    return n


def strip_comments(src: str) -> str:
    """Comments blanked out (string literals kept)."""
    return mask(src, ("comment",))


# ---- header / body -----------------------------------------------------------------------------------
_HEADER_LINE = re.compile(r"(import|open|set_option|universe|universes)\b")


def _header_end(src: str, keywords: tuple[str, ...]) -> int:
    """Offset where the body starts: after the last leading header command and the blank lines after it.
    Comment-only lines between header commands belong to the header; those after the last one (a theorem's
    docstring) to the body."""
    masked = mask(src)
    offset, end = 0, 0
    for line, raw in zip(masked.splitlines(keepends=True), src.splitlines(keepends=True), strict=True):
        stripped = line.strip()
        if not stripped:  # blank, or only comments
            offset += len(line)
            if not raw.strip() and end == offset - len(line):  # a blank line right after the header
                end = offset
            continue
        m = _HEADER_LINE.match(stripped)
        is_header = bool(m) and m.group(1) in keywords and line[0] not in " \t"
        if is_header and re.search(r"\bin\s*$", stripped) and m.group(1) in ("open", "set_option"):
            is_header = False  # `open Foo in` / `set_option x y in` scope the next command: body
        if not is_header:
            if line[0] in " \t" and end == offset and end > 0 and _continues_header(masked, end):
                offset += len(line)
                end = offset
                continue
            return end
        offset += len(line)
        end = offset
    return end


def _continues_header(masked: str, end: int) -> bool:
    """An indented line right after an `open` (a namespace list split over lines) still belongs to it."""
    prev = masked[:end].rstrip().splitlines()[-1:] or [""]
    return prev[0].startswith("open ")


def split_header(src: str) -> tuple[str, str]:
    """(header, body): the leading `import`/`open`/`set_option`/`universe` commands (with the comments and blank
    lines among them and the blank lines after them) and the rest; `header + body == src`."""
    src = src.lstrip("\ufeff")
    end = _header_end(src, ("import", "open", "set_option", "universe", "universes"))
    return src[:end], src[end:]


def split_imports(src: str) -> tuple[str, str]:
    """(imports, rest): the leading `import` lines (Lean allows them only there) and everything after."""
    src = src.lstrip("\ufeff")
    end = _header_end(src, ("import",))
    return src[:end], src[end:]


def imported_modules(src: str) -> list[str]:
    imports, _ = split_imports(src)
    return re.findall(r"^import\s+([\w.«»']+)", mask(imports), flags=re.M)


# ---- declarations -------------------------------------------------------------------------------------
DECL_KEYWORDS = ("theorem", "lemma", "def", "abbrev", "instance", "example", "axiom", "structure", "inductive",
                 "class", "opaque")
_MODIFIERS = r"(?:(?:private|protected|noncomputable|partial|unsafe|nonrec|scoped|local)\s+)*"
_ATTRS = r"(?:@\[[^\]]*\]\s*)*"
_DECL = re.compile(rf"^(?P<lead>{_ATTRS}{_MODIFIERS})(?P<kw>{'|'.join(DECL_KEYWORDS)})\b[ \t]*"
                   rf"(?P<name>[^\s:({{\[⦃]*)", re.M)
_SCOPE = re.compile(r"^(?:noncomputable\s+)?(?P<kw>namespace|section|end)\b[ \t]*(?P<name>[^\s]*)", re.M)
# A new command starts at column 0 with one of these (lines at column 0 that start otherwise, e.g. `(x : ℕ)` or
# `: x = 1 := by`, continue the previous command).
COMMAND_KEYWORDS = (*DECL_KEYWORDS, "namespace", "section", "end", "open", "set_option", "variable", "universe",
                    "import", "noncomputable", "private", "protected", "partial", "unsafe", "nonrec", "scoped",
                    "local", "attribute", "macro", "macro_rules", "syntax", "elab", "elab_rules", "notation",
                    "infix", "infixl", "infixr", "prefix", "postfix", "mutual", "include", "omit", "export",
                    "initialize", "deriving", "coinductive", "builtin_initialize")
_COMMAND_START = re.compile(rf"^(?=@\[|#|(?:{'|'.join(COMMAND_KEYWORDS)})\b)", re.M)


@dataclass(frozen=True)
class Decl:
    kind: str  # theorem | lemma | def | abbrev | ...
    name: str  # as written
    full_name: str  # with the enclosing namespaces
    start: int  # offset of the first attribute/modifier/keyword
    keyword: int  # offset of the keyword
    sig_end: int | None  # offset just past the `:=` that ends the signature (None: no `:=`)
    end: int  # offset where the next top-level command starts (or the end of the text)
    depth: int  # namespace/section nesting at the declaration


def declarations(src: str) -> list[Decl]:
    """Declarations at the start of a line, in order, with their namespace-qualified names."""
    return list(_declarations(src))


@lru_cache(maxsize=256)
def _declarations(src: str) -> tuple[Decl, ...]:
    masked = mask(src)
    events: list[tuple[int, str, Any]] = []
    for m in _DECL.finditer(masked):
        events.append((m.start(), "decl", m))
    for m in _SCOPE.finditer(masked):
        events.append((m.start(), "scope", m))
    events.sort(key=lambda e: e[0])
    starts = [m.start() for m in _COMMAND_START.finditer(masked)]
    stack: list[tuple[str, str]] = []  # (kind, name)
    decls: list[Decl] = []
    for _, what, m in events:
        if what == "scope":
            kw, name = m.group("kw"), m.group("name").replace("«", "").replace("»", "")
            if kw == "end":
                if stack:
                    stack.pop()
            else:
                stack.append((kw, name if kw == "namespace" else ""))
            continue
        name = m.group("name").replace("«", "").replace("»", "")
        ns = ".".join(n for k, n in stack if k == "namespace" and n)
        if name.startswith("_root_."):
            full = name[len("_root_."):]
        else:
            full = f"{ns}.{name}" if ns and name else name
        kw_pos = m.start("kw")
        end = next((s for s in starts if s > kw_pos), len(src))
        decls.append(Decl(m.group("kw"), name, full, m.start(), kw_pos, _signature_end(masked, m.end(), end),
                          end, len(stack)))
    return tuple(decls)


def _signature_end(masked: str, start: int, end: int) -> int | None:
    """Offset just past the first `:=` at bracket depth 0 in masked[start:end]."""
    at = assign_at_depth0(masked, start, end)
    return None if at is None else at + 2


def assign_at_depth0(masked: str, start: int, end: int, stop: re.Pattern[str] | None = None) -> int | None:
    """Offset of the first `:=` at bracket depth 0 in masked[start:end] (comments/strings already masked); None
    when there is none, or when `stop` matches at a depth-0 line break before it (the next step of a proof)."""
    depth = 0
    for i in range(start, min(end, len(masked))):
        c = masked[i]
        if c in "([{⟨⦃":
            depth += 1
        elif c in ")]}⟩⦄":
            depth -= 1
        elif depth == 0 and masked.startswith(":=", i):
            return i
        elif depth == 0 and c == "\n" and stop is not None and stop.match(masked, i):
            return None
    return None


def find_decl(src: str, name: str, kinds: tuple[str, ...] | None = None) -> Decl | None:
    """The declaration whose namespace-qualified name is `name` (the last one if repeated)."""
    found = [d for d in declarations(src) if d.full_name == name and (kinds is None or d.kind in kinds)]
    return found[-1] if found else None


TARGET_KINDS = ("theorem", "lemma", "def", "abbrev", "instance")


def theorem_name(statement: str) -> str | None:
    """Name of the declaration a formal statement asks to prove: its last `theorem`/`lemma` (PutnamBench statements
    start with answer abbrevs), else its last `def`/`abbrev`/`instance` (a few ProofNet items ask for a `def`)."""
    decls = [d for d in declarations(statement) if d.full_name]
    thms = [d for d in decls if d.kind in ("theorem", "lemma")] or [d for d in decls if d.kind in TARGET_KINDS]
    return thms[-1].full_name if thms else None


def theorem_statement(src: str, name: str) -> str | None:
    """Text of theorem `name` from its keyword through the `:=` of its signature; None when absent."""
    d = find_decl(src, name, TARGET_KINDS)
    if d is None or d.sig_end is None:
        return None
    return src[d.keyword:d.sig_end]


def normalize(text: str) -> str:
    """Comments dropped, `lemma` read as `theorem`, whitespace collapsed; a space survives only between two
    identifier characters (where it separates tokens)."""
    s = re.sub(r"\s+", " ", strip_comments(text)).strip()
    s = re.sub(r"^lemma\b", "theorem", s)  # (and the body's `lemma` keywords are compared as written)
    out = []
    for i, c in enumerate(s):
        if c == " " and not (_is_ident_char(s[i - 1]) and i + 1 < len(s) and _is_ident_char(s[i + 1])):
            continue
        out.append(c)
    return "".join(out)


def _statement_of(problem: Any) -> str:
    return problem if isinstance(problem, str) else problem.formal_statement


def same_statement(problem: Any, proof_src: str) -> bool:
    """True when `proof_src` declares, at top level, the problem's theorem with an unchanged statement, and each
    other declaration of the statement (PutnamBench answer abbrevs) with an unchanged signature, and with an
    unchanged value too where the problem fixes one (i.e. it is not `sorry`)."""
    return not statement_differences(problem, proof_src)


def statement_differences(problem: Any, proof_src: str) -> list[str]:
    """Why `same_statement` is false, one line per difference (empty when the statements agree)."""
    statement = _statement_of(problem)
    target = theorem_name(statement)
    problems: list[str] = []
    for want in declarations(statement):
        if want.kind == "example" or not want.full_name:
            continue
        got = find_decl(proof_src, want.full_name)
        if got is None:
            where = [d for d in declarations(proof_src) if d.name.split(".")[-1] == want.name.split(".")[-1]]
            problems.append(f"`{want.full_name}` is not declared at top level"
                            + (f" (found `{where[0].full_name}`)" if where else ""))
            continue
        if normalize(statement[want.keyword:want.sig_end or want.end]) != normalize(
                proof_src[got.keyword:got.sig_end or got.end]):
            problems.append(f"the statement of `{want.full_name}` was changed")
            continue
        if want.kind in ("abbrev", "def") and want.sig_end is not None and want.full_name != target:
            value = normalize(statement[want.sig_end:want.end])
            if value != "sorry" and value != normalize(proof_src[got.sig_end or got.end:got.end]):
                problems.append(f"the given value of `{want.full_name}` was changed")
    return problems


def preamble(statement: str) -> str:
    """Everything of a formal statement before its theorem (e.g. PutnamBench answer abbrevs)."""
    name = theorem_name(statement)
    d = find_decl(statement, name) if name else None
    return statement[:d.start] if d else ""


# ---- proofs -------------------------------------------------------------------------------------------
def with_proof(statement: str, proof: str) -> str:
    """A statement ending in `:= by` (or `:=`) completed with `proof` (tactics, indented under it)."""
    head = statement.rstrip()
    body = proof.strip("\n")
    if head.endswith("by"):
        lines = body.splitlines() or [""]
        if len(lines) == 1:
            return f"{head} {lines[0].strip()}\n"
        indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
        return head + "\n" + "\n".join("  " + x[indent:] if x.strip() else "" for x in lines) + "\n"
    return f"{head} {body}\n"


def replace_proof(src: str, name: str, proof: str) -> str:
    """`src` with the proof of theorem `name` (everything after its `:=`) replaced by `proof` (`by ...` or term)."""
    d = find_decl(src, name, TARGET_KINDS)
    if d is None or d.sig_end is None:
        raise ValueError(f"theorem {name!r} not found")
    tail = src[d.end:]
    return src[:d.sig_end] + " " + proof.strip() + ("\n\n" + tail.lstrip("\n") if tail.strip() else "\n")


def fill_answers(problem: Any) -> Any:
    """PutnamBench "answer given": a copy of `problem` whose answer abbrevs (`abbrev X : T := sorry`) hold the
    recorded answers (`problem.extra["answers"][X]["answer"]`)."""
    answers = (getattr(problem, "extra", None) or {}).get("answers") or {}
    statement = problem.formal_statement
    for name, rec in answers.items():
        d = find_decl(statement, name, ("abbrev", "def"))
        if d is None or d.sig_end is None:
            continue
        value = rec["answer"] if isinstance(rec, dict) else str(rec)
        statement = statement[:d.sig_end] + " " + value.strip() + "\n" + statement[d.end:].lstrip(" ")
        statement = _drop_answer_comment(statement, d.sig_end + len(value.strip()) + 2)
    new = copy.copy(problem)
    new.formal_statement = statement
    return new


def _drop_answer_comment(statement: str, at: int) -> str:
    return statement  # the `-- answer` comment PutnamBench keeps is harmless; kept as the source has it


# ---- model completions --------------------------------------------------------------------------------
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*$", re.M)
_LEAN_LANGS = {"lean", "lean4", "lean3"}


def last_lean_block(completion: str) -> str | None:
    """The content of the last ```lean/```lean4 code block (an untagged block when there is no tagged one);
    an unterminated last block (truncated generation) counts, up to the end of the text."""
    blocks: list[tuple[str, str]] = []  # (lang, content)
    opened = None
    for m in _FENCE.finditer(completion):
        if opened is None:
            opened = (m.group("lang").lower(), m.end() + 1, m.group("fence")[0])
        elif m.group("fence")[0] == opened[2] and not m.group("lang"):
            blocks.append((opened[0], completion[opened[1]:m.start()]))
            opened = None
    if opened is not None:
        tail = completion[opened[1]:]
        tail = re.sub(r"\n?[ \t]*`{1,2}\s*$", "", tail)  # a closing fence cut short
        blocks.append((opened[0], tail))
    tagged = [c for lang, c in blocks if lang in _LEAN_LANGS]
    untagged = [c for lang, c in blocks if not lang and re.search(r"\b(theorem|lemma|example|by)\b", c)]
    pick = tagged or untagged
    if not pick:
        return None
    block = pick[-1].strip("\n")
    return block + "\n" if block.strip() else None
