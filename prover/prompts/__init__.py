"""DeepSeek-Prover-style prompt templates (data: `default.toml`, overridable with `--prompts FILE`).

`load_prompts(path)` -> `PromptSet`; `prompts.render(kind, problem, **fields)` -> prompt text;
`prompts[kind]` -> the `Template` (its stop strings, whether it continues an open code block, whether it is
sent as a chat turn). Extraction of the proof from a completion lives in `prover.prompts.extract`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.errors import ProverError

DEFAULT_FILE = Path(__file__).with_name("default.toml")
# DeepSeek-Prover's (and miniF2F's) standard header: statements typed without one are checked under it.
DEFAULT_HEADER = ("import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\n"
                  "open BigOperators Real Nat Topology Rat\n\n")
KINDS = ("complete", "cot", "sketch", "repair", "tactic")
PLACEHOLDERS = ("header", "statement", "informal", "proof", "errors", "goals", "tactics")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


@dataclass(frozen=True)
class Template:
    kind: str
    template: str
    chat: bool = False
    continues_code: bool = False
    stop: tuple[str, ...] = ()

    def render(self, **fields: str) -> str:
        # Only the known placeholders are replaced: Lean text is full of braces (`{n : ℕ}`).
        return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), ""), self.template)


@dataclass(frozen=True)
class PromptSet:
    templates: dict[str, Template]
    source: str = str(DEFAULT_FILE)

    def __getitem__(self, kind: str) -> Template:
        try:
            return self.templates[kind]
        except KeyError:
            raise ProverError(f"no prompt template {kind!r} (have: {', '.join(self.templates)})") from None

    def render(self, kind: str, problem: Any, chat_format=None, **fields: str) -> str:
        """The prompt for `problem` (duck-typed: `.header`, `.formal_statement`, `.informal_statement`).

        `chat_format(user_text) -> str` wraps chat templates as one user turn (a backend's `format_chat`).
        """
        template = self[kind]
        informal = getattr(problem, "informal_statement", None)
        values = {
            "header": getattr(problem, "header", "") or "",
            "statement": statement_text(problem.formal_statement),
            "informal": f"/-- {informal.strip()} -/\n" if informal else "",
            **fields,
        }
        text = template.render(**values)
        return chat_format(text) if template.chat and chat_format is not None else text


def statement_text(formal_statement: str) -> str:
    """The statement as prompts show it: ends in `:= by`, no trailing blanks or `sorry`."""
    from lean_env.text import open_statement

    return (open_statement(formal_statement) or formal_statement).rstrip()


def load_prompts(path: str | Path | None = None, defaults: Path = DEFAULT_FILE) -> PromptSet:
    """The templates of `defaults` (the prover's; autoformalize passes its own), with the tables of `path`
    (TOML) laid over them."""
    tables = _read(defaults)
    if path is not None:
        for kind, table in _read(Path(path)).items():
            if not isinstance(table, dict):
                raise ProverError(f"{path}: [{kind}] must be a table with a `template` string")
            tables[kind] = {**tables.get(kind, {}), **table}
    templates: dict[str, Template] = {}
    for kind, t in tables.items():
        where = path or defaults
        if not isinstance(t.get("template"), str):
            raise ProverError(f"{where}: [{kind}] needs a `template` string")
        unknown = set(t) - {"template", "chat", "continues_code", "stop"}
        if unknown:
            raise ProverError(f"{where}: [{kind}] has unknown keys {sorted(unknown)}")
        stop = t.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ProverError(f"{where}: [{kind}] `stop` must be a list of strings")
        templates[kind] = Template(kind, t["template"], bool(t.get("chat", False)),
                                   bool(t.get("continues_code", False)), tuple(stop))
    return PromptSet(templates, str(path or defaults))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProverError(f"prompt file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ProverError(f"prompt file {path}: {e}") from None


__all__ = ["DEFAULT_HEADER", "KINDS", "PromptSet", "Template", "load_prompts", "statement_text"]
