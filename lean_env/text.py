"""Lean 4 source text utilities: comment/string masking, header split, declarations, statements, code blocks.

Everything here is lexical (no Lean needed) and position-preserving: `mask` blanks comments and string/char
literals with spaces (newlines kept), so offsets found in the masked text are offsets in the source.
"""

from __future__ import annotations

import bisect
import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from lean_env.problem import LeanProblem

_IDENT_CHAR = re.compile(r"[\w'!?₀-₉ₐ-ₜᵢ-ᵪ]")


def _is_ident_char(c: str) -> bool:
    return bool(c) and bool(_IDENT_CHAR.match(c))


# ---- the lexer ----------------------------------------------------------------------------------------
# Follows Lean 4's own tokenizer (src/Lean/Parser/Basic.lean: `whitespace`, `finishCommentBlock`, `tokenFnAux`,
# `strLitFnAux`, `rawStrLitFnAux`, `charLitFnAux`, `identFnAux`; `interpolatedStrFn`), so a check that reads
# these tokens sees what Lean sees. Written by hand: no maintained Python library lexes Lean 4.
TOKEN_KINDS = (
    "ident",  # identifiers and keywords (`theorem`, `Nat.succ`, `«x y».z`, `s!`, `h'`)
    "number",  # 12, 0x1F, 1.5e3
    "string",  # "…" and raw r#"…"#; an interpolated string is split into pieces around its `{code}` parts
    "char",  # 'a', '\n'
    "name",  # `Nat.succ (a Name literal)
    "command",  # #eval, #check, #exit, … (a `#` with the word after it)
    "symbol",  # any other character: ( ) [ ] { } : = @ ⟨ …
    "comment",  # -- line, /- block -/ (nested)
    "doc",  # /-- doc comment -/
    "moddoc",  # /-! module doc -/
)
CODE_KINDS = frozenset({"ident", "number", "name", "command", "symbol"})
COMMENT_KINDS = frozenset({"comment", "doc", "moddoc"})
# the syntaxes whose string argument is an interpolated string (`interpolatedStr(term)`); `foo!` covers
# s! m! f! println! panic! assert! and any other `…!` macro
INTERPOLATORS = frozenset({"throwError", "throwErrorAt", "throwNamedError", "throwNamedErrorAt", "dbg_trace",
                           "logNamedError", "logNamedWarning", "trace"})


@dataclass(frozen=True)
class Token:
    kind: str  # one of TOKEN_KINDS
    start: int
    end: int


def _is_letter_like(o: int) -> bool:  # Lean's `isLetterLike`
    return ((0x3B1 <= o <= 0x3C9 and o != 0x3BB) or (0x391 <= o <= 0x3A9 and o not in (0x3A0, 0x3A3))
            or 0x3CA <= o <= 0x3FB or 0x1F00 <= o <= 0x1FFE or 0x2100 <= o <= 0x214F or 0x1D49C <= o <= 0x1D59F)


def is_id_first(c: str) -> bool:
    """Lean's `isIdFirst`: ASCII letters, `_`, and the letter-like Unicode blocks (Greek but λ Π Σ, ℝ ℕ …)."""
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "_" or (c > "\x7f" and _is_letter_like(ord(c)))


def is_id_rest(c: str) -> bool:
    """Lean's `isIdRest`: what may follow inside an identifier (digits, `'`, `!`, `?`, subscripts)."""
    if is_id_first(c) or ("0" <= c <= "9") or c in "'!?":
        return True
    o = ord(c)
    return 0x2080 <= o <= 0x2089 or 0x2090 <= o <= 0x209C or 0x1D62 <= o <= 0x1D6A


_NUMBER = re.compile(r"0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?")
_RAW_START = re.compile(r'r#*"')
_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_NOT_NEWLINE = re.compile(r"[^\n]")
_ASCII_ID_REST = re.compile(r"[A-Za-z0-9_'!?]*")  # `is_id_rest` on ASCII


def tokens(src: str, interpolation: str = "lean") -> tuple[Token, ...]:
    """Every token of `src`, comments included, in order (whitespace is what lies between them).

    `interpolation` says which string literals are interpolated (their `{…}` parts lexed as code): "lean" (those
    after `s!`, `m!`, `f!`, any `…!` macro, `throwError` & co, as Lean's grammar has it), "all" or "none". Which
    reading Lean takes depends on its grammar, not on the characters: a check that must not be fooled by a syntax
    it does not know reads the text all three ways (`readings`)."""
    if interpolation not in ("lean", "all", "none"):
        raise ValueError(f"interpolation must be lean, all or none, not {interpolation!r}")
    return _tokens(src, interpolation)


@lru_cache(maxsize=512)
def _tokens(src: str, interpolation: str) -> tuple[Token, ...]:
    out: list[Token] = []
    _lex(src, 0, out, interpolation, nested=False)
    return tuple(out)


def _lex(src: str, i: int, out: list[Token], interpolation: str, nested: bool) -> int:
    """Lex code from `i`; inside an interpolation (`nested`) stop before the `}` that closes it."""
    n, depth = len(src), 0
    while i < n:
        c = src[i]
        if c in " \t\r\n\f\v":
            i = _SPACE.match(src, i).end()  # a run at once: indentation is most of a proof's characters
        elif c.isspace() and c > "\x7f":
            i += 1
        elif src.startswith("--", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(Token("comment", i, j))
            i = j
        elif src.startswith("/-", i):
            third = src[i + 2:i + 3]
            if third in ("-", "!"):  # `/--` and `/-!` are tokens; the body starts right after them
                j = _comment_end(src, i + 3)
                out.append(Token("doc" if third == "-" else "moddoc", i, j))
            else:  # Lean skips the character after `/-` unread (`/-/- -/` is one comment, not two nested)
                j = _comment_end(src, min(n, i + 3))
                out.append(Token("comment", i, j))
            i = j
        elif c == '"':
            i = _string(src, i, out, interpolation)
        elif c == "'" and src[i + 1:i + 2] != "'":
            j = _char_end(src, i)
            out.append(Token("char" if j else "symbol", i, j or i + 1))
            i = j or i + 1
        elif "0" <= c <= "9":
            m = _NUMBER.match(src, i)
            out.append(Token("number", i, m.end()))
            i = m.end()
        elif c == "`" and i + 1 < n and (is_id_first(src[i + 1]) or src[i + 1] == "«"):
            j = _ident_end(src, i + 1)
            out.append(Token("name", i, j))
            i = j
        elif c == "r" and _RAW_START.match(src, i):
            j = _raw_string_end(src, i)
            out.append(Token("string", i, j))
            i = j
        elif is_id_first(c) or c == "«":
            j = _ident_end(src, i)
            out.append(Token("ident", i, j))
            i = j
        elif c == "#" and i + 1 < n and is_id_first(src[i + 1]):
            j = i + 1
            while j < n and is_id_rest(src[j]):
                j += 1
            out.append(Token("command", i, j))
            i = j
        else:
            if nested and c == "}" and depth == 0:
                return i
            depth += (c == "{") - (c == "}")
            out.append(Token("symbol", i, i + 1))
            i += 1
    return n


def _comment_end(src: str, j: int) -> int:
    """End of a block comment whose body starts at `j` (nesting 1): `finishCommentBlock`."""
    n, depth = len(src), 1
    while j < n:
        if src.startswith("-/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        elif src.startswith("/-", j):
            depth += 1
            j += 2
        else:
            j += 1
    return n


def _ident_end(src: str, i: int) -> int:
    """End of the identifier at `i`: parts (plain or «escaped») joined by `.` when a part follows the dot."""
    n = len(src)
    while True:
        if src[i] == "«":
            j = src.find("»", i + 1)
            if j < 0:
                return n
            i = j + 1
        else:
            i += 1
            while True:  # ASCII runs by one regex match (the lexer's hot loop), other characters one by one
                i = _ASCII_ID_REST.match(src, i).end()
                if i < n and src[i] > "\x7f" and is_id_rest(src[i]):
                    i += 1
                else:
                    break
        if i + 1 < n and src[i] == "." and (is_id_first(src[i + 1]) or src[i + 1] == "«"):
            i += 1
        else:
            return i


def _char_end(src: str, i: int) -> int:
    """End of the char literal at `i`, or 0 when there is none (Lean reports an error there)."""
    j = i + 1
    if j >= len(src):
        return 0
    if src[j] == "\\":
        j += 1
        j += 3 if src[j:j + 1] == "x" else 5 if src[j:j + 1] == "u" else 1
    else:
        j += 1
    return j + 1 if src[j:j + 1] == "'" else 0


def _raw_string_end(src: str, i: int) -> int:
    hashes = _RAW_START.match(src, i).end() - i - 2
    close = '"' + "#" * hashes
    j = src.find(close, i + 2 + hashes)
    return len(src) if j < 0 else j + len(close)


def _interpolated_here(out: list[Token], src: str, interpolation: str) -> bool:
    if interpolation != "lean":
        return interpolation == "all"
    prev = next((t for t in reversed(out) if t.kind not in COMMENT_KINDS), None)
    if prev is None:
        return False
    word = src[prev.start:prev.end]
    if prev.kind == "ident":
        return word.endswith("!") or word in INTERPOLATORS
    if word == "]":  # trace[cls] "…"
        k = len(out) - 2
        depth, stop = 1, max(-1, len(out) - 34)  # a trace class is short: a bounded look back keeps lexing linear
        while k > stop and depth:
            w = src[out[k].start:out[k].end]
            depth += (w == "]") - (w == "[")
            k -= 1
        return k >= 0 and src[out[k].start:out[k].end] == "trace"
    return False


def _string(src: str, i: int, out: list[Token], interpolation: str) -> int:
    """Lex the string literal at `i`; an interpolated one as string pieces around its lexed `{code}` parts."""
    n = len(src)
    interpolated = _interpolated_here(out, src, interpolation)
    start, j = i, i + 1
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
        elif c == '"':
            out.append(Token("string", start, j + 1))
            return j + 1
        elif c == "{" and interpolated:
            out.append(Token("string", start, j + 1))
            j = _lex(src, j + 1, out, interpolation, nested=True)
            start = j  # the closing `}` starts the next piece
            j += 1
        else:
            j += 1
    out.append(Token("string", start, min(j, n)))
    return n


def readings(src: str) -> tuple[tuple[Token, ...], ...]:
    """The text lexed with each reading of its string literals (see `tokens`): Lean's grammar, all
    interpolated, none interpolated. A scan that flags what any reading shows cannot be hidden in a string."""
    if '"' not in src:  # the readings differ only inside string literals, and each has a `"`: one reading
        return (tokens(src, "lean"),) * 3
    return tuple(tokens(src, mode) for mode in ("lean", "all", "none"))


def ident_parts(word: str) -> list[str]:
    """The components of an identifier as Lean names them: `«a b».c` -> ["a b", "c"]."""
    parts, i, n = [], 0, len(word)
    while i < n:
        if word[i] == "«":
            j = word.find("»", i + 1)
            j = n if j < 0 else j
            parts.append(word[i + 1:j])
            i = j + 2
        else:
            j = word.find(".", i)
            j = n if j < 0 else j
            parts.append(word[i:j])
            i = j + 1
    return parts


def code_tokens(src: str, interpolation: str = "lean") -> list[Token]:
    """The tokens Lean elaborates: no comments, doc comments or string/char literals."""
    return [t for t in tokens(src, interpolation) if t.kind in CODE_KINDS]


def literal_spans(src: str, interpolation: str = "lean") -> list[tuple[int, int, str]]:
    """(start, end, kind) of every comment (all three kinds are "comment"), string literal piece and char literal."""
    return [(t.start, t.end, "comment" if t.kind in COMMENT_KINDS else t.kind)
            for t in tokens(src, interpolation) if t.kind in COMMENT_KINDS or t.kind in ("string", "char")]


@lru_cache(maxsize=512)
def mask(src: str, kinds: tuple[str, ...] = ("comment", "string", "char"), interpolation: str = "lean") -> str:
    """`src` with comments and string/char literals (those of `kinds`) replaced by spaces, newlines kept; the
    `{code}` parts of interpolated strings stay (they are code)."""
    pieces, last = [], 0
    for a, b, kind in literal_spans(src, interpolation):
        if kind in kinds and b > last:
            a = max(a, last)
            pieces += [src[last:a], _NOT_NEWLINE.sub(" ", src[a:b])]  # one C pass per span, not a loop per character
            last = b
    pieces.append(src[last:])
    return "".join(pieces)


def strip_comments(src: str) -> str:
    """Comments blanked out (string literals kept)."""
    return mask(src, ("comment",))


# ---- header / body -----------------------------------------------------------------------------------
_HEADER_LINE = re.compile(r"(import|open|set_option|universe|universes)\b")
# a whole line of imports: Lean runs whatever follows a module name on its line (`import Mathlib #eval …`) as a command
_IMPORTS_ONLY = re.compile(r"(?:import\s+(?:[\w.'!?]|«[^»\n]*»)+\s*)+")
_IN = re.compile(r"(?<![\w.'!?])in(?![\w'!?])")


def lean_lines(src: str) -> list[str]:
    """`src`'s lines, each with its "\n", split where Lean splits them: on "\n" only (`str.splitlines` also splits
    on U+2028, form feeds and the like, which a comment may hold; the masked and the raw text would then part)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", src)


def _header_end(src: str, keywords: tuple[str, ...]) -> int:
    """Offset where the body starts: after the last leading header command and the blank lines after it.
    Comment-only lines between header commands belong to the header; those after the last one (a theorem's
    docstring) to the body."""
    masked = mask(src)
    offset, end = 0, 0
    for line, raw in zip(lean_lines(masked), lean_lines(src), strict=True):
        stripped = line.strip()
        if not stripped:  # blank, or only comments
            offset += len(line)
            if not raw.strip() and end == offset - len(line):  # a blank line right after the header
                end = offset
            continue
        m = _HEADER_LINE.match(stripped)
        is_header = bool(m) and m.group(1) in keywords and line[0] not in " \t"
        if is_header and m.group(1) == "import" and not _IMPORTS_ONLY.fullmatch(stripped):
            is_header = False  # more than imports on the line: it is code, and the body starts there
        if is_header and _IN.search(stripped) and m.group(1) in ("open", "set_option"):
            is_header = False  # `open Foo in` / `set_option x y in` scope the next command (on that line too): body
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
    return re.findall(r"(?<![\w.'!?])import\s+([\w.«»'!?]+)", mask(imports))


# ---- declarations -------------------------------------------------------------------------------------
DECL_KEYWORDS = ("theorem", "lemma", "def", "abbrev", "instance", "example", "axiom", "structure", "inductive",
                 "class", "opaque")
MODIFIERS = ("private", "protected", "noncomputable", "partial", "unsafe", "nonrec", "scoped", "local", "public")
SCOPE_KEYWORDS = ("namespace", "section", "end")
# A line starting (at column 0) with one of these starts a new command; other lines at column 0, e.g. `(x : ℕ)` or
# `: x = 1 := by`, continue the previous one. Declarations and scopes start a command at any column.
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
    end: int  # offset where the next command starts (or the end of the text)
    depth: int  # namespace/section nesting at the declaration


@dataclass(frozen=True)
class Scope:
    kind: str  # namespace | section | end
    name: str  # as written, «» removed ("" for an anonymous section / a bare `end`)
    start: int


def declarations(src: str) -> list[Decl]:
    """Declarations at any column (a command may be indented), in order, with their namespace-qualified names."""
    return list(_declarations(src))


def scopes(src: str) -> list[Scope]:
    """`namespace`/`section`/`end` commands, in order."""
    return list(_commands(src)[1])


def open_scopes(src: str) -> list[Scope]:
    """The `namespace`s and `section`s still open at the end of `src` (outermost first)."""
    stack: list[Scope] = []
    for s in scopes(src):
        if s.kind == "end":
            del stack[len(stack) - min(len(stack), scope_depth(s.name)):]
        else:
            stack += [s] * scope_depth(s.name)
    return list(dict.fromkeys(stack))


def scope_depth(name: str) -> int:
    """How many scopes `namespace A.B` opens (or `end A.B` closes): one per component, as Lean does."""
    return len(name.split(".")) if name else 1


@lru_cache(maxsize=256)
def _commands(src: str) -> tuple[tuple[tuple[Token, int], ...], tuple[Scope, ...]]:
    """(declaration keyword tokens with their lead offset, scope commands), from the code tokens."""
    toks = code_tokens(src)
    words = [src[t.start:t.end] for t in toks]
    decls: list[tuple[Token, int]] = []
    found_scopes: list[Scope] = []
    attr_depth = 0  # inside `@[...]` / `attribute [...]`, where `instance` & co are attribute names
    for k, (t, w) in enumerate(zip(toks, words, strict=True)):
        if w == "[" and k and (words[k - 1] == "@" or words[k - 1] == "attribute" or attr_depth):
            attr_depth += 1
            continue
        if w == "]" and attr_depth:
            attr_depth -= 1
            continue
        if attr_depth or t.kind != "ident":
            continue
        if w in DECL_KEYWORDS:
            prev = words[k - 1] if k else ""
            if prev == "deriving" or (w == "inductive" and prev == "class"):
                continue
            decls.append((t, _lead(toks, words, k)))
        elif w in SCOPE_KEYWORDS:
            nxt = toks[k + 1] if k + 1 < len(toks) else None
            same_line = nxt is not None and nxt.kind == "ident" and "\n" not in src[t.end:nxt.start]
            name = ".".join(ident_parts(words[k + 1])) if same_line and words[k + 1] not in COMMAND_KEYWORDS else ""
            found_scopes.append(Scope(w, name, t.start))
    return tuple(decls), tuple(found_scopes)


def _lead(toks: list[Token], words: list[str], k: int) -> int:
    """Offset of the first attribute list or modifier before the keyword token `k`."""
    start = toks[k].start
    j = k - 1
    while j >= 0:
        if words[j] in MODIFIERS:
            start, j = toks[j].start, j - 1
        elif words[j] == "]":
            depth, i = 0, j
            while i >= max(0, j - 256):  # bounded: attribute lists are short, and lexing must stay linear
                depth += (words[i] == "]") - (words[i] == "[")
                if depth == 0:
                    break
                i -= 1
            if i >= 1 and words[i - 1] == "@":
                start, j = toks[i - 1].start, i - 2
            else:
                break
        else:
            break
    return start


@lru_cache(maxsize=256)
def _declarations(src: str) -> tuple[Decl, ...]:
    masked = mask(src)
    keyword_toks, found_scopes = _commands(src)
    toks = code_tokens(src)
    index = {t.start: k for k, t in enumerate(toks)}
    events: list[tuple[int, str, Any]] = [(t.start, "decl", (t, lead)) for t, lead in keyword_toks]
    events += [(s.start, "scope", s) for s in found_scopes]
    events.sort(key=lambda e: e[0])
    # a declaration ends where the next command starts: another declaration or scope (any column), or a line
    # that starts with a command keyword at column 0
    leads = {lead for _, lead in keyword_toks}
    all_toks = tokens(src)
    docs = {t.start for t, nxt in zip(all_toks, all_toks[1:], strict=False) if t.kind == "doc" and nxt.start in leads}
    starts = sorted({m.start() for m in _COMMAND_START.finditer(masked)} | leads | docs
                    | {s.start for s in found_scopes})
    stack: list[tuple[str, str]] = []  # (kind, name)
    decls: list[Decl] = []
    for _, what, ev in events:
        if what == "scope":
            if ev.kind == "end":
                del stack[len(stack) - min(len(stack), scope_depth(ev.name)):]
            else:
                stack += [(ev.kind, part if ev.kind == "namespace" else "") for part in
                          (ev.name.split(".") if ev.name else [""])]
            continue
        tok, lead = ev
        kw = src[tok.start:tok.end]
        k = index[tok.start]
        name_tok = toks[k + 1] if k + 1 < len(toks) and toks[k + 1].kind == "ident" else None
        if kw == "class" and name_tok is not None and src[name_tok.start:name_tok.end] == "inductive":
            name_tok = toks[k + 2] if k + 2 < len(toks) and toks[k + 2].kind == "ident" else None
        word = src[name_tok.start:name_tok.end] if name_tok is not None else ""
        name = "" if word in ("where", "extends", "deriving") else word.replace("«", "").replace("»", "")
        ns = ".".join(n for kind, n in stack if kind == "namespace" and n)
        if name.startswith("_root_."):
            full = name[len("_root_."):]
        else:
            full = f"{ns}.{name}" if ns and name else name
        at = bisect.bisect_right(starts, tok.start)
        end = starts[at] if at < len(starts) else len(src)
        sig_from = name_tok.end if name_tok is not None and name else tok.end
        decls.append(Decl(kw, name, full, lead, tok.start, _signature_end(masked, sig_from, end), end, len(stack)))
    return tuple(decls)


def _signature_end(masked: str, start: int, end: int) -> int | None:
    """Offset just past the first `:=` at bracket depth 0 in masked[start:end]."""
    at = assign_at_depth0(masked, start, end)
    return None if at is None else at + 2


OPEN_BRACKETS, CLOSE_BRACKETS = "([{⟨⦃", ")]}⟩⦄"


def find_at_depth0(masked: str, sep: str, start: int = 0, end: int | None = None,
                   stop: re.Pattern[str] | None = None) -> int | None:
    """Offset of the first `sep` at bracket depth 0 in masked[start:end] (comments/strings already masked, see
    `mask`); None when there is none, or when `stop` matches at a depth-0 line break before it. THE bracket scan:
    every reader of signatures, goals and hypotheses splits with this one."""
    depth = 0
    end = len(masked) if end is None else min(end, len(masked))
    # Only brackets, `sep` and (with `stop`) line breaks matter: one regex jumps between them (a character loop
    # cost milliseconds per long candidate). `sep` holds no bracket, so skipping over one inside brackets is safe.
    for m in _depth0_marks(sep, stop is not None).finditer(masked, start, end):
        c = m.group()
        if c in OPEN_BRACKETS:
            depth += 1
        elif c in CLOSE_BRACKETS:
            depth -= 1  # (unbalanced: no depth 0 after it, as Lean would not parse on)
        elif depth == 0 and c == sep:
            return m.start()
        elif depth == 0 and c == "\n" and stop.match(masked, m.start()):
            return None
    return None


@lru_cache(maxsize=32)
def _depth0_marks(sep: str, line_breaks: bool) -> re.Pattern[str]:
    brackets = "[" + re.escape(OPEN_BRACKETS + CLOSE_BRACKETS) + "]"
    return re.compile("|".join([brackets, re.escape(sep)] + (["\n"] if line_breaks else [])))


def split_at_depth0(src: str, sep: str) -> tuple[str, str, str]:
    """`src` split at the first `sep` outside brackets, comments and strings (like `str.partition`)."""
    at = find_at_depth0(mask(src), sep)
    return (src, "", "") if at is None else (src[:at], sep, src[at + len(sep):])


def assign_at_depth0(masked: str, start: int, end: int, stop: re.Pattern[str] | None = None) -> int | None:
    """Offset of the first `:=` at bracket depth 0 in masked[start:end] (comments/strings already masked); None
    when there is none, or when `stop` matches at a depth-0 line break before it (the next step of a proof)."""
    return find_at_depth0(masked, ":=", start, end, stop)


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


@lru_cache(maxsize=512)  # a problem's own declarations are compared with every candidate's
def normalize(text: str) -> str:
    """Comments dropped, `lemma` read as `theorem`, whitespace collapsed; a space survives only between two
    identifier characters (where it separates tokens)."""
    s = re.sub(r"\s+", " ", strip_comments(text)).strip()
    s = re.sub(r"^lemma\b", "theorem", s)  # (and the body's `lemma` keywords are compared as written)
    # every space is now single, with a character on each side: keep it only between identifier characters
    return _ONE_SPACE.sub(lambda m: " " if _is_ident_char(s[m.start() - 1]) and _is_ident_char(s[m.start() + 1])
                          else "", s)


_ONE_SPACE = re.compile(" ")


def _statement_of(problem: LeanProblem | str) -> str:
    return problem if isinstance(problem, str) else problem.formal_statement


def same_statement(problem: LeanProblem | str, proof_src: str) -> bool:
    """True when `proof_src` declares, at top level, the problem's theorem with an unchanged statement, and each
    other declaration of the statement (PutnamBench answer abbrevs) with an unchanged signature, and with an
    unchanged value too where the problem fixes one (i.e. it is not `sorry`)."""
    return not statement_differences(problem, proof_src)


def statement_differences(problem: LeanProblem | str, proof_src: str) -> list[str]:
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
_OPEN_END = re.compile(r":=\s*by$")
_SORRY_END = re.compile(r":=\s*(?:by\s+)?sorry$")


def open_statement(stmt: str) -> str | None:
    """THE `:= by` ending: `stmt` as a statement awaiting a tactic proof. `... := by` is kept as given; `:= by
    sorry`, `:= sorry` and a bare `:=` become `:= by`; None when it has no proof part to open."""
    body = stmt.rstrip()
    if _OPEN_END.search(body):
        return stmt
    if m := _SORRY_END.search(body):
        return body[:m.start()] + ":= by"
    return body + " by" if body.endswith(":=") else None


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


P = TypeVar("P", bound=LeanProblem)


def fill_answers(problem: P) -> P:
    """PutnamBench "answer given": a copy of `problem` whose answer abbrevs (`abbrev X : T := sorry`) hold the
    recorded answers (`problem.extra["answers"][X]["answer"]`)."""
    answers = (problem.extra or {}).get("answers") or {}
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
    new.extra = {**(problem.extra or {}), ANSWER_MODE: "given"}  # the Verifier places them
    return new


ANSWER_MODE = "answer_mode"  # problem.extra key: "given" after `fill_answers`; absent (produced) otherwise


def answer_names(problem: LeanProblem | str) -> list[str]:
    """The PutnamBench answer abbrevs of a problem (the declarations its statement makes before the theorem)."""
    return [d.full_name for d in declarations(preamble(_statement_of(problem))) if d.full_name
            and d.kind in ("abbrev", "def")]


def decl_value(src: str, d: Decl) -> str:
    """The text after a declaration's `:=` (its value), up to the next command."""
    return src[d.sig_end:d.end] if d.sig_end is not None else ""


def _drop_answer_comment(statement: str, at: int) -> str:
    return statement  # the `-- answer` comment PutnamBench keeps is harmless; kept as the source has it


# ---- model completions --------------------------------------------------------------------------------
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*$", re.M)
_LEAN_LANGS = {"lean", "lean4", "lean3"}


def code_blocks(completion: str) -> list[tuple[str, str]]:
    """(language tag lowercased, content) of every fenced code block (``` or ~~~ at the start of a line, closed
    by a bare fence of the same character), in order; an unterminated last block (truncated generation) counts,
    up to the end of the text. THE fence parser: every reader of model completions goes through it."""
    blocks: list[tuple[str, str]] = []
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
    return blocks


def lean_blocks(completion: str) -> list[str]:
    """Every non-blank Lean block (tagged lean/lean4/lean3, or untagged), in order, outer blank lines removed."""
    return [c.strip("\n") for lang, c in code_blocks(completion) if (lang in _LEAN_LANGS or not lang) and c.strip()]


def last_lean_block(completion: str) -> str | None:
    """The content of the last ```lean/```lean4 code block (an untagged block when there is no tagged one);
    an unterminated last block (truncated generation) counts, up to the end of the text."""
    blocks = code_blocks(completion)
    tagged = [c for lang, c in blocks if lang in _LEAN_LANGS]
    untagged = [c for lang, c in blocks if not lang and re.search(r"\b(theorem|lemma|example|by)\b", c)]
    pick = tagged or untagged
    if not pick:
        return None
    block = pick[-1].strip("\n")
    return block + "\n" if block.strip() else None
