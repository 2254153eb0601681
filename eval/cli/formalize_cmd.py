"""`subgoal formalize`: natural-language problems -> Lean 4 statements, filtered by Lean."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from eval.cli.common import config, console, err_console


def register(app: typer.Typer) -> None:
    @app.command("formalize")
    def formalize(
        ctx: typer.Context,
        informal: Path = typer.Argument(..., help="JSONL of informal problems (id/name + informal_statement)."),
        out: Path = typer.Option(..., "--out", "-o", help="Problem-set JSONL to write (report beside it)."),
        model: str | None = typer.Option(None, "--model", help="Formalizer model (HF id or checkpoint)."),
        backend: str | None = typer.Option(None, "--backend", help="transformers | vllm | openai."),
        samples: int = typer.Option(4, "--samples", "-n", min=1, help="Candidate statements per problem."),
        temperature: float = typer.Option(0.8, "--temperature"),
        max_tokens: int = typer.Option(1024, "--max-tokens", min=1),
        header: str | None = typer.Option(None, "--header", help="Header for every statement (default: Mathlib)."),
        faithfulness: bool = typer.Option(False, "--faithfulness/--no-faithfulness",
                                          help="Model-graded faithfulness score and threshold."),
        min_faithfulness: float = typer.Option(0.5, "--min-faithfulness", min=0.0, max=1.0),
        grader: str | None = typer.Option(None, "--grader", help="Grading model (default: the formalizer)."),
        decontaminate: bool = typer.Option(True, "--decontaminate/--no-decontaminate",
                                           help="Drop statements that match a benchmark in the data dir."),
        prompts: Path | None = typer.Option(None, "--prompts", help="TOML overriding the prompt templates."),
    ) -> None:
        """Formalize informal problems; keep statements that compile and are neither inconsistent, false nor
        trivial (Lean-checked), deduplicated; write a problem set with provenance and a drop report."""
        from autoformalize import FormalizeConfig, read_informal, write_problems
        from autoformalize.formalize import formalize as run
        from autoformalize.formalize import report_path, summarize
        from data.decontam import Decontaminator
        from lean_env import make_verifier
        from prover.generate import make_backend

        cfg = config(ctx, model={"model": model, "backend": backend})
        problems = read_informal(informal, header=header)
        fcfg = FormalizeConfig(samples=samples, temperature=temperature, max_tokens=max_tokens,
                               faithfulness=faithfulness, min_faithfulness=min_faithfulness,
                               prompts=str(prompts) if prompts else None)
        decon = Decontaminator.from_registry(cfg) if decontaminate else None
        verifier = make_verifier(cfg.lean)
        gen = judge = None
        try:
            gen = make_backend(cfg.model)
            judge = make_backend(cfg.model.model_copy(update={"model": grader})) if grader else None
            with err_console.status(f"formalizing {len(problems)} problems x {samples} samples"):
                kept, report = run(problems, gen, verifier, fcfg, grader=judge, decontaminator=decon)
        finally:
            for b in (gen, judge):
                if b is not None:
                    b.close()
            verifier.close()
        write_problems(kept, out)
        report_path(out).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))

        from rich.table import Table

        table = Table(title=f"formalize: {out}")
        table.add_column("")
        table.add_column("count", justify="right")
        for label, n in summarize(report):
            table.add_row(label, str(n))
        console.print(table)
        err_console.print(f"wrote {len(kept)} statements to {out}, report to {report_path(out)}")
