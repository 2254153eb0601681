"""The CuTe-DSL kernel paths' shared lazy import (prover/model/hopper.py): where a package is missing, the flag's own
module says so in one error, with the install command."""

from __future__ import annotations

import sys

import pytest

from prover.errors import ProverError
from prover.model import attention_fa4, loss_quack, moe_quack


@pytest.mark.parametrize("module, cache, package, message", [
    (moe_quack, "_quack", "quack", "moe_impl 'quack' needs quack-kernels"),
    (loss_quack, "_lce", "quack", "loss_impl 'quack' needs quack-kernels"),
    (attention_fa4, "_fa4", "flash_attn", "attention 'fa4' needs flash-attn-4"),
])
def test_missing_kernel_package_is_one_clear_error(monkeypatch, module, cache, package, message):
    monkeypatch.setattr(module, cache, None)
    monkeypatch.setitem(sys.modules, package, None)  # import <package> -> ImportError
    with pytest.raises(ProverError, match=message + r".*pip install 'subgoal\["):
        module.kernels()
    assert getattr(module, cache) is None  # nothing half-loaded: the next call tries again
