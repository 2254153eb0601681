"""`subgoal train sft` as users run it, the whole command, with and without `--cuda-graph` (and any other flag sets):
its wall time, and the steady tokens/s its own log reports (`metrics.jsonl`, real tokens over each step's time).

    PYTHONPATH=. python bench/sft_cli_gpu.py                                  # H200: small, 128-1024 tokens
    PYTHONPATH=. python bench/sft_cli_gpu.py --preset tiny --device cpu --examples 16 --steps 3 --batch-size 2 \
        --len-min 16 --len-max 64 --variants default                          # CPU smoke test

The run's inputs, made in `--work`: bench/e2e_gpu.py's random-weight DeepSeek-V3 checkpoint of `--preset` (bf16 on
CUDA, the project's BPE tokenizer trained on the benchmark statements of the configured data dir) and `--examples`
SFT examples whose prompt and completion are random tokens decoded to text, the completion 1/2-3/4 of each
example, lengths uniform in [--len-min, --len-max] tokens (about: re-tokenized text may merge differently). Each
variant (`--variants`, of VARIANTS, comma-separated) is one `subgoal train sft` subprocess (its entry point run
from this tree) on the same inputs with `--max-steps --steps`, from scratch.

`steady_tokens_per_s`: the last half of the steps' tokens over their time, from the log (each step's tokens over
its `tokens_per_s`: after the first steps' compiling and capturing); `median_step_tokens_per_s` the median of those
steps' own speeds, which leaves out the few slow ones; `wall_s`: the whole command, start to
exit (loading, compiling, the steps, the final checkpoint). Prints a table; writes JSON to $OUT/sft_cli_gpu.json
(or --out). On the GPU machine the command needs the project's dependencies its image lacks, carried as wheels
(bench/carry.py): at least datasets, pyarrow, dill, multiprocess, xxhash, typer, rich, shellingham,
markdown-it-py, mdurl, pydantic and pydantic-core, and tensorboard if absent (the run's log writes TensorBoard);
the fa4 / quack variants also the FA4 and QuACK wheels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from e2e_gpu import build_checkpoint  # noqa: E402
from results import write_result  # noqa: E402

# `subgoal` itself: its entry point, run from the repository (the GPU machine runs the tree, not an install)
SUBGOAL = "import sys; from eval.cli import main; sys.argv[0] = 'subgoal'; main(sys.argv[1:])"
VARIANTS = {  # name -> the flags it adds to the shared command
    "default": [],  # CUDA graphs where the step can be captured (one CUDA process, bf16, compiled)
    "no-cuda-graph": ["--no-cuda-graph"],
    "cuda-graph": ["--cuda-graph"],
    "fa4-quack-lce": ["--moe-impl", "quack", "--attention", "fa4", "--loss-impl", "quack"],
    "fa4-quack-lce-cuda-graph": ["--moe-impl", "quack", "--attention", "fa4", "--loss-impl", "quack", "--cuda-graph"],
}


def make_inputs(work: Path, preset: str, n: int, len_min: int, len_max: int, device: str,
                seed: int = 0) -> tuple[Path, Path]:
    """The checkpoint (bench/e2e_gpu.py's) and the examples JSONL the variants share."""
    from transformers import AutoTokenizer

    model_dir, _ = build_checkpoint(preset, work / "model", device, seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(len_min, len_max + 1, (), generator=g))
        completion = int(length * (0.5 + 0.25 * float(torch.rand((), generator=g))))
        ids = torch.randint(3, len(tok), (length,), generator=g).tolist()  # past bos, eos and pad
        rows.append({"prompt": tok.decode(ids[: length - completion]), "completion": tok.decode(ids[length - completion:]),
                     "kind": "whole_proof", "problem": f"p{i}", "statement": "", "source": "bench"})
    data = work / "examples.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return model_dir, data


def run_variant(name: str, flags: list[str], model_dir: Path, data: Path, work: Path, args) -> dict:
    out = work / f"out-{name}"
    cmd = [sys.executable, "-c", SUBGOAL, "train", "sft", "--model", str(model_dir), "--data", str(data),
           "--out", str(out), "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--max-length", str(args.len_max), "--lr", "1e-5", "--no-resume", "--device", args.device, *flags]
    print(f"{name}: subgoal {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get(
                              "PYTHONPATH")]))})
    wall = time.perf_counter() - t
    row = {"row": name, "flags": " ".join(flags), "wall_s": wall}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {**row, "error": f"exit {proc.returncode}: {tail[0][:300]}"}
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    late = logged[len(logged) // 2:]
    # Each step's seconds are its tokens over its tokens/s: the late half's tokens over their seconds is the speed
    # of that stretch of the run (a median of the steps' speeds hides the slow steps, such as a new shape's).
    seconds = sum(m["step_tokens"] / m["tokens_per_s"] for m in late)
    return {**row, "steps": len(logged), "steady_tokens_per_s": sum(m["step_tokens"] for m in late) / seconds,
            "median_step_tokens_per_s": statistics.median(m["tokens_per_s"] for m in late),
            "tokens_per_step": statistics.mean(m["step_tokens"] for m in logged), "final_loss": logged[-1]["loss"],
            "notes": [line for line in proc.stderr.splitlines() if line.startswith("--cuda-graph:")]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--len-min", type=int, default=128)
    ap.add_argument("--len-max", type=int, default=1024, help="the longest example; also --max-length")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--variants", default="no-cuda-graph,default", help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--work", default=None, help="inputs and runs (default $OUT/sft_cli_work)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/sft_cli_gpu.json)")
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (of {', '.join(VARIANTS)})")
    if not 2 <= args.len_min <= args.len_max:
        ap.error("--len-min must be in [2, --len-max]")
    base = Path(os.environ.get("OUT", "."))
    work = Path(args.work) if args.work else base / "sft_cli_work"
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else base / "sft_cli_gpu.json"
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir, data = make_inputs(work, args.preset, args.examples, args.len_min, args.len_max, device)
    rows = [run_variant(n, VARIANTS[n], model_dir, data, work, args) for n in names]
    first = next((r for r in rows if "steady_tokens_per_s" in r), None)
    for r in rows:
        if first is not None and "steady_tokens_per_s" in r:
            r["vs_first"] = r["steady_tokens_per_s"] / first["steady_tokens_per_s"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{gpu} | torch {torch.__version__} | {args.preset}, {args.batch_size} examples of "
          f"{args.len_min}-{args.len_max} tokens a step, {args.steps} steps")
    print(f"{'variant':28} {'steady tok/s':>13} {'median step':>12} {'vs first':>9} {'tok/step':>9} {'wall s':>8}  "
          "flags / error")
    for r in rows:
        if "error" in r:
            print(f"{r['row']:28} {'':>13} {'':>12} {'':>9} {'':>9} {r['wall_s']:8.1f}  {r['error']}")
        else:
            print(f"{r['row']:28} {r['steady_tokens_per_s']:13,.0f} {r['median_step_tokens_per_s']:12,.0f} "
                  f"{r['vs_first']:9.3f} {r['tokens_per_step']:9,.0f} {r['wall_s']:8.1f}  {r['flags']}")
    write_result("sft_cli_gpu", vars(args), rows, out_path, device=gpu, torch=torch.__version__)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
