"""Strategy options: one dataclass per strategy owns the defaults; bad keys and values are refused where they enter."""

from __future__ import annotations

import pytest

from prover.errors import ProverError
from prover.recipe import ProveRecipe
from prover.search import Budget
from prover.search.options import (
    DecomposeOptions,
    RepairOptions,
    SampleOptions,
    TreeOptions,
    check_options,
    default_max_tokens,
    with_default_samples,
)


def test_text_values_become_the_fields_types():
    assert check_options("sample", {"batch": "4", "stop_at_first": "False", "mode": "cot"}) == {
        "batch": 4, "stop_at_first": False, "mode": "cot"}
    assert check_options("decompose", {"subproblem_samples": None, "sketch": "theorem t : True := by sorry"}) == {
        "subproblem_samples": None, "sketch": "theorem t : True := by sorry"}


@pytest.mark.parametrize("strategy, values, message", [
    ("repair", {"width": 3}, "unknown option 'width' for strategy repair (valid: mode, rounds)"),
    ("sample", {"batch": "eight"}, "option batch wants int, got 'eight'"),
    ("sample", {"batch": True}, "option batch wants int, got True"),
    ("sample", {"stop_at_first": "yes"}, "option stop_at_first wants true or false, got 'yes'"),
    ("tree", {"mode": "chat"}, "option mode must be complete or cot, not 'chat'"),
    ("beam", {}, "unknown strategy 'beam'"),
])
def test_bad_options_are_one_error(strategy, values, message):
    with pytest.raises(ProverError) as e:
        check_options(strategy, values)
    assert message in str(e.value)


def test_the_recipe_refuses_a_bad_option_when_made():
    with pytest.raises(ProverError, match="unknown option 'rounds' for strategy sample"):
        ProveRecipe("sample", options={"rounds": 2})
    assert ProveRecipe("repair", options={"rounds": "2"}).options == {"rounds": 2}


def test_strategies_read_their_own_fields_and_the_defaults_live_in_the_dataclass():
    mixed = {"mode": "cot", "lemma_samples": 2, "batch": 3, "rounds": 5}  # a lemma's sampler sees its parent's keys
    assert SampleOptions.read(mixed) == SampleOptions(mode="cot", batch=3, stop_at_first=True)
    assert RepairOptions.read({}).rounds == 3
    assert DecomposeOptions.read({"lemma_samples": 2}).sub_samples == 8
    assert DecomposeOptions.read({"lemma_samples": 2, "subproblem_samples": 5}).sub_samples == 5
    assert TreeOptions.read({}) == TreeOptions(mode="complete", width=8, max_expansions=64)


def test_one_rule_for_samples_per_attempt():
    assert with_default_samples("sample", {}) == {"samples": 1}
    assert with_default_samples("tree", {"tokens": 100}) == {"tokens": 100, "samples": 256}
    assert with_default_samples("repair", {"samples": 2}) == {"samples": 2}
    assert with_default_samples("decompose", Budget().limits())["samples"] == 32


def test_tokens_per_generation_follow_the_mode_option():
    assert ProveRecipe("sample", options={"mode": "cot"}).sampling_params().max_tokens == default_max_tokens("cot")
    assert ProveRecipe("tree").sampling_params().max_tokens == default_max_tokens("complete") < default_max_tokens("cot")
