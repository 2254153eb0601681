"""`subgoal lean ...`: locate/install the Lean toolchain, say what is missing, check a Lean file, serve the verifier."""

from __future__ import annotations

from pathlib import Path

import typer

from eval.cli.common import config, console, err_console

app = typer.Typer(help="The Lean toolchain: setup, doctor, check a file, audit a run by kernel replay, serve the "
                  "verifier (HTTP, MCP).",
                  no_args_is_help=True)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Report each piece Lean needs (elan, lake, lean, Mathlib project, REPL), its version, and how to fix it."""
    from rich.markup import escape
    from rich.table import Table

    from lean_env.errors import LeanNotFound
    from lean_env.toolchain import doctor as run_doctor

    checks = run_doctor(config(ctx).lean)
    table = Table(title="Lean toolchain")
    for col in ("piece", "status", "found", "version", "what to do"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]missing[/]", escape(c.found), escape(c.version),
                      escape(c.fix))
    console.print(table)
    missing = [c.name for c in checks if not c.ok and c.required]
    if missing:
        raise LeanNotFound(f"Lean is not usable here: missing {', '.join(missing)}. Run `subgoal lean setup` on a "
                           "machine with internet, or set lean.project_dir and lean.repl_path in the config (env "
                           "SUBGOAL_LEAN__PROJECT_DIR / SUBGOAL_LEAN__REPL_PATH) to an existing install.")
    console.print("[green]Lean is ready.[/]")


@app.command()
def setup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands without running them."),
    home: Path | None = typer.Option(None, "--home", help="Install directory (else $SUBGOAL_LEAN_HOME, ~/.subgoal/lean)."),
    version: str | None = typer.Option(None, "--version", help="Lean version tag (else \\[lean] lean_version)."),
    comparator: bool = typer.Option(False, "--comparator", help="Also install leanprover/comparator with lean4export "
                                    "and landrun, and lean4checker (kernel replay for `subgoal lean audit`; landrun "
                                    "needs Go)."),
) -> None:
    """Install elan, Lean, a Mathlib project (with its .olean cache) and the REPL, all at one pinned version."""
    from lean_env.toolchain import run_setup

    version = version or config(ctx).lean.lean_version
    plan = run_setup(version, home, dry_run=dry_run, log=err_console.print, comparator=comparator)
    if dry_run:
        for i, step in enumerate(plan, 1):
            mark = " (already done: skipped)" if step.skip else ""
            console.print(f"{i}. {step.what}{mark}\n   {step.shell()}", highlight=False, markup=False,
                          soft_wrap=True)
        return
    console.print("[green]Lean is installed.[/] `subgoal lean doctor` shows the result.")


@app.command()
def check(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A .lean file: its imports are the header, its last theorem the target."),
    theorem: str | None = typer.Option(None, "--theorem", help="The theorem to check (default: the last one)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per REPL call (else config lean.timeout_s)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Verify a Lean file: no error, no sorry, standard axioms only; exit 1 unless proved."""
    import json

    from data.errors import read_text
    from data.lean_file import file_problem
    from lean_env import make_verifier
    from lean_env.errors import LeanError

    src = read_text(file)
    problem = file_problem(src, file.stem, theorem)
    if problem is None:
        raise LeanError(f"{file}: no theorem to check" + (f" named {theorem}" if theorem else ""))
    settings = config(ctx).lean
    if timeout:
        settings.timeout_s = timeout
    verifier = make_verifier(settings, workers=1)
    try:
        verdict = verifier.verify(problem, src)
    finally:
        verifier.close()
    if as_json:
        console.print_json(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        color = "green" if verdict.proved else "red"
        console.print(f"[{color}]{verdict.status.value}[/]: {problem.name}  ({verdict.wall_time:.1f}s)")
        for r in verdict.reasons:
            console.print(f"  - {r}", highlight=False, markup=False)
        for m in verdict.messages:
            where = f"{file}:{m.pos.line}:{m.pos.column}" if m.pos else str(file)
            console.print(f"  {where}: {m.severity}: {m.data}", highlight=False, markup=False)
        if verdict.axioms:
            console.print(f"  axioms: {', '.join(verdict.axioms)}", highlight=False, markup=False)
    if not verdict.proved:
        raise SystemExit(1)  # (typer.Exit's code is dropped by the root's standalone_mode=False)


@app.command()
def audit(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="A run directory (its store.sqlite) made by `subgoal eval`/`prove`."),
    run: str | None = typer.Option(None, "--run", help="The run's name, when the store holds several."),
    checker: str = typer.Option("comparator", "--checker", help="The kernel-replay checker: comparator (statement, "
                                "axioms and kernel replay) or lean4checker (kernel replay only)."),
    force: bool = typer.Option(False, "--force", help="Re-check attempts this checker already audited."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Check at most this many attempts now."),
    timeout: float = typer.Option(1800.0, "--timeout", min=1, help="Seconds per attempt."),
) -> None:
    """Re-check every proved attempt of a run by kernel replay; the checker's verdicts go beside ours in the store
    (the leaderboard shows audited counts). Exit 1 when the checker rejects an attempt we counted as proved."""
    from eval.audit import audit_run
    from lean_env.audit import Comparator, Lean4Checker
    from lean_env.errors import LeanError, LeanNotFound
    from lean_env.toolchain import find_comparator, lean4checker_path, locate

    if checker not in ("comparator", "lean4checker"):
        raise LeanError(f"unknown checker {checker!r}: comparator or lean4checker (SafeVerify is not wired in)")
    settings = config(ctx).lean
    toolchain = locate(settings)
    if toolchain.project_dir is None:
        raise LeanError("kernel replay needs the Mathlib project (lean.project_dir); `subgoal lean doctor`")
    if checker == "comparator":
        replay: Comparator | Lean4Checker = Comparator(find_comparator(settings), toolchain.project_dir,
                                                       lake=toolchain.lake, timeout_s=timeout)
    else:
        path = lean4checker_path(settings)
        if path is None or not path.is_file():
            raise LeanNotFound("kernel replay with lean4checker needs leanprover/lean4checker on PATH; run "
                               "`subgoal lean setup --comparator` (needs internet)")
        replay = Lean4Checker(path, toolchain.project_dir, lake=[str(toolchain.lake or "lake")], timeout_s=timeout)
    summary = audit_run(run_dir, config(ctx), replay, run=run, force=force, limit=limit, log=err_console.print)
    console.print(f"{summary.checker}: {summary.audited} checked now ({summary.accepted} accepted, "
                  f"{summary.rejected} rejected, {summary.unavailable} not checked), {summary.skipped} audited "
                  f"before, of {summary.proved} proved attempts", highlight=False, markup=False)
    if summary.rejected:
        raise SystemExit(1)


def _problems(ctx: typer.Context, sets: list[str] | None) -> dict:
    """Problems of the named sets by name, for requests that name a problem (a duplicate name is an error)."""
    from data.registry import load_problems
    from lean_env.errors import LeanError

    out: dict = {}
    for target in sets or []:
        for p in load_problems(target, config(ctx)):
            if p.name in out:
                raise LeanError(f"problem {p.name!r} is in two of the --problems sets; serve them separately")
            out[p.name] = p
    return out


PROBLEMS = typer.Option(None, "--problems", help="A problem set (benchmark name or .jsonl/.lean file) whose problems "
                        "requests may name; repeatable.")
WORKERS = typer.Option(None, "--workers", help="REPL processes (else config lean.workers).")
TIMEOUT = typer.Option(None, "--timeout", help="Largest per-request Lean timeout, seconds (else config lean.timeout_s).")


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    problems: list[str] = PROBLEMS,
    workers: int | None = WORKERS,
    timeout: float | None = TIMEOUT,
    max_wait: float = typer.Option(60.0, "--max-wait", help="Seconds a snippet waits for a REPL before the "
                                   "request is answered 429."),
    queue: int = typer.Option(4, "--queue", help="Snippets admitted per REPL beyond the running ones."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="LEAN_SERVER_API_KEY",
                                       help="Require `Authorization: Bearer KEY` (env LEAN_SERVER_API_KEY, as kimina)."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", help="Largest request body, MiB (else 413)."),
    request_log: Path | None = typer.Option(None, "--request-log", help="Append one JSON line per request here."),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error."),
    warm: list[str] = typer.Option(None, "--warm", help="A header to import on every REPL before serving, e.g. "
                                   "'import Mathlib' (\\n between lines); repeatable."),
    warm_problems: bool = typer.Option(True, "--warm-problems/--no-warm-problems",
                                       help="Import the --problems' headers on every REPL before serving."),
) -> None:
    """Serve the verifier over HTTP, compatible with kimina-lean-server (`/api/check`, `/verify`)."""
    from lean_env.errors import LeanError
    from lean_env.serve import serve_forever

    if port < 0 or port > 65535 or max_wait <= 0 or queue < 0 or max_body_mb <= 0:
        raise LeanError("--port must be 0-65535, --max-wait and --max-body-mb positive, --queue at least 0")
    cfg = config(ctx, lean={"workers": workers, "timeout_s": timeout})
    serve_forever(cfg.lean, _problems(ctx, problems), host=host, port=port, max_wait_s=max_wait,
                  queue_per_worker=queue, api_key=api_key, max_body_bytes=int(max_body_mb * (1 << 20)),
                  request_log=request_log, log_level=log_level,
                  warm_headers=[h.replace("\\n", "\n") for h in warm or []], warm_problems=warm_problems)


@app.command()
def mcp(
    ctx: typer.Context,
    transport: str = typer.Option("stdio", "--transport", help="stdio (an agent starts this command) | http."),
    host: str = typer.Option("127.0.0.1", "--host", help="http: interface to listen on."),
    port: int = typer.Option(8001, "--port", help="http: TCP port (the endpoint is /mcp)."),
    problems: list[str] = PROBLEMS,
    workers: int | None = WORKERS,
    timeout: float | None = TIMEOUT,
) -> None:
    """Serve the verifier as MCP tools for agents: check_snippet, verify_proof, goals_at_sorry, split_sketch."""
    from lean_env.errors import LeanError
    from lean_env.mcp_tools import serve_mcp

    if transport not in ("stdio", "http"):
        raise LeanError(f"--transport must be stdio or http, not {transport!r}")
    cfg = config(ctx, lean={"workers": workers, "timeout_s": timeout})
    serve_mcp(cfg.lean, _problems(ctx, problems), transport=transport, host=host, port=port)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="lean")
