"""A small byte-level BPE tokenizer trained on Lean text, for tests and small experiments (real runs pass a HF
tokenizer). Saved as a `PreTrainedTokenizerFast` directory that `transformers.AutoTokenizer` loads.

    python -m prover.model.tokenizer --out DIR [--vocab-size 1024] [files...]

Without files it trains on the formal statements of the benchmark JSONL files in the configured data dir.
Special tokens: `<｜begin▁of▁sentence｜>` (id 0, bos), `<｜end▁of▁sentence｜>` (id 1, eos, DeepSeek's
spelling), `<pad>` (id 2), matching the `bos_token_id=0, eos_token_id=1` of the presets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prover.errors import ProverError

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<pad>"


def lean_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Text of each file; for .jsonl files, the header + formal_statement (+ any proof fields) of each record."""
    for p in map(Path, paths):
        if not p.is_file():
            raise ProverError(f"tokenizer training file {p} does not exist")
        if p.suffix == ".jsonl":
            with p.open(encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    rec = json.loads(line)
                    yield "".join(str(rec.get(k) or "") for k in ("header", "formal_statement", "formal_proof", "proof"))
        else:
            yield p.read_text(encoding="utf-8")


def default_files(data_dir: str | Path | None = None) -> list[Path]:
    if data_dir is None:
        from data.config import default_data_dir

        data_dir = default_data_dir()
    files = sorted(Path(data_dir).glob("*.jsonl"))
    if not files:
        raise ProverError(f"no *.jsonl benchmark files under {data_dir} to train a tokenizer on; pass files")
    return files


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """Train byte-level BPE; returns a `transformers.PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False, model_max_length=4096)


def build_test_tokenizer(vocab_size: int = 1024, data_dir: str | Path | None = None,
                         files: Iterable[str | Path] | None = None, limit: int = 400) -> Any:
    """A tokenizer for tests: trained on at most `limit` Lean texts (fast: well under a second)."""
    texts = list(lean_texts(files if files is not None else default_files(data_dir)))[:limit]
    return train_tokenizer(texts, vocab_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prover.model.tokenizer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory to write the tokenizer to")
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--data-dir", default=None, help="benchmark dir (default: the configured data dir)")
    ap.add_argument("files", nargs="*", help="Lean / JSONL files to train on")
    args = ap.parse_args(argv)
    try:
        files = args.files or default_files(args.data_dir)
        tok = train_tokenizer(lean_texts(files), args.vocab_size)
    except (ProverError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tok.save_pretrained(args.out)
    print(f"wrote tokenizer ({len(tok)} tokens) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
