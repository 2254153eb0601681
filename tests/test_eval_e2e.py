"""`subgoal eval` end to end with the FAKE Lean REPL (tests/fakes/fake_lean.py), in one process and on local Ray.

(The same on local Ray: test_eval_ray.py.)

1. miniF2F-test (`--limit 4`) with a tiny random model: the pipeline runs (every attempt recorded, report
   written, resume does nothing twice); no miniF2F statement is in the fake REPL's fragment, so every
   verdict is a failure.
2. A JSONL of problems inside the fragment with a scripted backend (a stand-in for a model, defined here,
   wired in by a `ProveRecipe` subclass): some attempts prove, some hand in `sorry` (never counted), pass@k
   matches the estimator exactly, and each problem's one-sample attempts are drawn in one generation call.
"""

from __future__ import annotations

from pathlib import Path

from helpers.cli import cli
from helpers.eval_runs import check_minif2f_run, check_scripted_fragment_run, minif2f_cli, stored

from data.config import load_config
from eval.harness import EvalSpec


def test_eval_minif2f_one_process_then_resume(tiny_model, fake_lean_env, tmp_path, capsys):
    out = tmp_path / "runs" / "tiny-minif2f"
    # A first start that fails before any attempt (no such model) does not pin the run to its settings.
    assert minif2f_cli(tmp_path / "no-such-model", out) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert minif2f_cli(tiny_model, out) == 0
    check_minif2f_run(out, tiny_model)
    table = capsys.readouterr().out
    assert "pass@1" in table and "pass@2" in table
    assert "this run's wall" in table and "summed over attempts" in table  # overlapping attempts: no clock

    assert minif2f_cli(tiny_model, out) == 0  # resume: everything is done, nothing runs twice
    assert "0 attempts recorded, 8 already done" in " ".join(capsys.readouterr().err.split())
    assert len(stored(out)[1]) == 8

    # same run directory, other strategy: refused, nothing mixed
    assert minif2f_cli(tiny_model, out, "--strategy", "repair") == 2
    assert "was started with strategy='sample'" in " ".join(capsys.readouterr().err.split())


# ------------------------------------------------------------------ fragment problems + scripted backend


def test_scripted_fragment_run_gives_exact_pass_at_k(fragment_jsonl, fake_lean_env, tmp_path):
    check_scripted_fragment_run(fragment_jsonl, tmp_path / "fragment-local", ray=False)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, fake_lean_env):
    bad_prompts = tmp_path / "prompts.toml"
    cases = [
        (["eval", "no-such-set", "--model", "m", "--out", str(tmp_path / "a")], "unknown problem set"),
        (["eval", "minif2f-test", "--model", "m", "-k", "4", "--samples", "2", "--out", str(tmp_path / "b")],
         "must be >= -k"),
        (["eval", "minif2f-test", "--model", "m", "--strategy", "guess", "--out", str(tmp_path / "c")],
         "unknown strategy"),
        (["eval", "minif2f-test", "--model", "m", "--interaction", "lean3", "--out", str(tmp_path / "d")],
         "--interaction must be repl or dojo"),
        (["eval", "minif2f-test", "--model", "m", "--prompts", str(bad_prompts), "--out", str(tmp_path / "e")],
         "needs a `template` string"),
    ]
    bad_prompts.write_text("[complete]\ntemplate = 3\n")
    for argv, message in cases:
        assert cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and "Traceback" not in err, err
        assert not Path(argv[-1]).exists()  # refused before a run directory was made


def test_putnam_answer_settings_change_the_statement_only_when_given(tmp_path):
    from eval.harness import select_problems

    config = load_config()
    given = select_problems(EvalSpec("putnambench", out=tmp_path, limit=3, putnam_answers="given"), config)
    produced = select_problems(EvalSpec("putnambench", out=tmp_path, limit=3, putnam_answers="produced"), config)
    assert [p.name for p in given] == [p.name for p in produced] and len(given) == 3
    with_answer = [(g, p) for g, p in zip(given, produced, strict=True) if p.extra.get("answers")]
    assert with_answer, "the first PutnamBench problems include one that asks for an answer"
    for g, p in with_answer:
        abbrev = next(line for line in p.formal_statement.splitlines() if line.startswith("abbrev"))
        assert abbrev.rstrip().endswith(":= sorry")  # produced: the prover must fill it
        filled = next(line for line in g.formal_statement.splitlines() if line.startswith("abbrev"))
        answer = next(iter(p.extra["answers"].values()))["answer"]
        assert "sorry" not in filled and answer.strip() in g.formal_statement
    for g, p in zip(given, produced, strict=True):
        if not p.extra.get("answers"):
            assert g.formal_statement == p.formal_statement
