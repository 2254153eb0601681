"""What the CuTe-DSL kernel paths share (prover/model/hopper.py): where the GPU is not sm90+ or a package is missing,
the flag's own module says so in one error, with what to do."""

from __future__ import annotations

import sys

import pytest
import torch

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


@pytest.mark.parametrize("check, message", [
    (moe_quack.check_quack, "moe_impl 'quack'"),
    (loss_quack.check_fused_loss, "loss_impl 'quack'"),
    (attention_fa4.check_fa4, "attention 'fa4'"),
])
def test_on_a_cpu_each_path_is_one_clear_error(check, message):
    with pytest.raises(ProverError, match=message + " needs a CUDA GPU of compute capability >= 9.0.*no CUDA device"):
        check(torch.device("cpu"))
