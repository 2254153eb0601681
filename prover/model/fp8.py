"""FP8 training GEMMs for the DeepSeek-V3 model through torchao (DeepSeek-V3's mixed-precision recipe).

The rule: only GEMMs go to FP8. Dense projections become torchao FP8 linears (`blockwise`: 1x128 activation and
128x128 weight tiles, DeepSeek-V3's own scaling; `rowwise`: one scale per row), the routed experts' grouped GEMM
runs torchao's rowwise FP8 `_scaled_grouped_mm`; the embedding, the output head, the router, the norms and the
attention core (SDPA softmax) keep their precision, as in the paper, and so do master weights and optimizer
states (`prover.train.optim`). Parameter names and dtypes are unchanged, so checkpoints are the same files.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from prover.errors import ProverError

RECIPES = ("blockwise", "rowwise")
TORCHAO = "torchao==0.18.0"


@dataclass
class FP8Plan:
    """Which modules run FP8 GEMMs (name -> how) and which keep their precision (name -> why)."""

    convert: dict[str, str] = field(default_factory=dict)
    keep: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return f"FP8: {len(self.convert)} modules converted, {len(self.keep)} kept in bf16/fp32"


def fp8_plan(model: nn.Module, recipe: str = "blockwise", experts: bool = True) -> FP8Plan:
    """Decide per module, without touching the model (so it runs anywhere, a meta-device model included);
    `experts=False` keeps the routed experts' grouped GEMM in bf16 (their FP8 casts can cost more than the GEMM
    saves at narrow expert widths)."""
    from prover.model.attention import MLA, RMSNorm
    from prover.model.moe import RoutedExperts, Router

    if recipe not in RECIPES:
        raise ProverError(f"unknown FP8 recipe {recipe!r} ({', '.join(RECIPES)})")
    align = 128 if recipe == "blockwise" else 16  # blockwise tiles; FP8 tensor-core GEMMs need multiples of 16
    plan = FP8Plan()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding):
            plan.keep[name] = "embedding: kept (DeepSeek-V3 keeps it in BF16)"
        elif name == "lm_head" or name.endswith("shared_head"):
            plan.keep[name] = "output head: kept"
        elif isinstance(mod, Router):
            plan.keep[name] = "router/gating: kept (fp32 scores)"
        elif isinstance(mod, RMSNorm):
            plan.keep[name] = "normalization: kept"
        elif isinstance(mod, MLA):
            plan.keep[name] = "attention core (SDPA softmax): kept in BF16; its projections are listed apart"
        elif isinstance(mod, RoutedExperts):
            E, two_i, H = mod.gate_up_proj.shape
            if not experts:
                plan.keep[name] = "routed experts: kept (bf16 grouped GEMM, as asked)"
            elif H % 16 or two_i % 32:
                plan.keep[name] = f"routed experts: kept (widths {H}, {two_i // 2} not multiples of 16)"
            else:  # torchao's blockwise grouped GEMM needs DeepGEMM kernels; its rowwise one is cuBLAS/CUTLASS
                plan.convert[name] = "rowwise FP8 grouped GEMM"
        elif isinstance(mod, nn.Linear):
            if recipe == "blockwise" and mod.bias is not None:
                plan.keep[name] = "linear with bias: kept (torchao's blockwise linear has none)"
            elif mod.in_features % align or mod.out_features % align:
                plan.keep[name] = f"linear {mod.in_features}->{mod.out_features}: kept (not multiples of {align})"
            else:
                plan.convert[name] = f"{recipe} FP8 linear"
    return plan


def check_fp8(device: torch.device, recipe: str = "blockwise") -> None:
    """One clear error where FP8 training cannot run: no CUDA, a GPU without FP8 tensor cores, no torchao."""
    if recipe not in RECIPES:
        raise ProverError(f"unknown FP8 recipe {recipe!r} ({', '.join(RECIPES)})")
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ProverError(f"--fp8 needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9: Ada, Hopper "
                          f"or newer); the device is {device}")
    cc = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if cc < (8, 9):
        raise ProverError(f"--fp8 needs compute capability >= 8.9 (Ada, Hopper or newer); {name} is "
                          f"{cc[0]}.{cc[1]}: train in bf16 (drop --fp8)")
    if recipe == "blockwise" and cc < (9, 0):
        raise ProverError(f"--fp8-recipe blockwise needs compute capability >= 9.0 (Hopper); {name} is "
                          f"{cc[0]}.{cc[1]}: use --fp8-recipe rowwise")
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise ProverError(f"--fp8 needs torchao: pip install '{TORCHAO}' (or pip install 'subgoal[fp8]')") from None


def convert_to_fp8(model: nn.Module, recipe: str = "blockwise", device: torch.device | None = None,
                   emulate: bool = False, experts: bool = True) -> FP8Plan:
    """Swap the planned modules in place (after the model is on its device, in bf16; before compiling and
    distributed wrapping); returns the plan. `emulate` (tests on CPU): rowwise linears in torchao's emulation
    mode, experts unchanged; no speed, only the wiring."""
    device = device or next(model.parameters()).device
    if emulate:
        if recipe != "rowwise":
            raise ProverError("FP8 emulation exists for the rowwise recipe only")
    else:
        check_fp8(device, recipe)
    plan = fp8_plan(model, recipe, experts)
    if recipe == "rowwise":
        from torchao.float8 import Float8LinearConfig

        config = Float8LinearConfig.from_recipe_name("rowwise")
        if emulate:
            import dataclasses

            config = dataclasses.replace(config, emulate=True)
        swap = functools.partial(row_padded_float8_linear().from_float, config=config)
    else:
        swap = row_padded_blockwise_linear().from_float
    for name, how in plan.convert.items():
        if how.endswith("linear"):  # what torchao's convert_to_float8_training does, with our row-padded class
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, swap(model.get_submodule(name)))
    if not emulate:
        narrow_torchao_autotuning()
        for name, how in plan.convert.items():
            if how.endswith("grouped GEMM"):
                model.get_submodule(name).fp8 = True
    return plan


def rows_padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int) -> torch.Tensor:
    """`fn` over the rows of `x` flattened to 2-D and zero-padded to a multiple of `multiple` rows, the pad rows'
    outputs dropped: torchao's blockwise FP8 linear quantizes activations in 128-row tiles (its backward asserts
    on any other row count), FP8 GEMMs contract over multiples of 16 (the rowwise weight gradient's contraction is
    the rows), and a step's token count is often neither (the MTP module sees S - 1 per sequence)."""
    rows = x.numel() // x.shape[-1]
    flat = x.reshape(rows, x.shape[-1])
    pad = -rows % multiple
    out = fn(F.pad(flat, (0, 0, 0, pad)) if pad else flat)
    return (out[:rows] if pad else out).reshape(*x.shape[:-1], out.shape[-1])


@functools.cache
def row_padded_blockwise_linear() -> type[nn.Module]:
    """torchao's `Float8BlockwiseLinear` taking any number of tokens (`rows_padded`); same parameter names.

    It runs inside torch.compile, so that inductor launches its quantization kernels (torchao `triton_op`s) from
    the compiled graph instead of Python: run eagerly they cost ~0.2 ms of host time each, and the H200 step was
    host-bound (361 ms of host work for 152 ms of GPU work, docs/BENCHMARKS.md). What kept it out is one call:
    for plain tensors torchao's `_scaled_mm` goes through `F.scaled_mm`, which torch 2.11's dynamo cannot trace
    ("does not know how to trace the builtin `torch._scaled_mm_v2`"); `traceable_blockwise_scaled_mm` sends it
    through torchao's own custom op instead."""
    from torchao.prototype.blockwise_fp8_training import linear as blockwise
    from torchao.prototype.blockwise_fp8_training.linear import Float8BlockwiseLinear

    if not hasattr(blockwise, "_scaled_mm"):  # another torchao layout: the patch below would change nothing
        raise ProverError(f"--fp8-recipe blockwise is written against {TORCHAO}: pip install '{TORCHAO}'")
    blockwise._scaled_mm = traceable_blockwise_scaled_mm  # read at call time by its `_run_blockwise_mm`

    class RowPaddedBlockwiseLinear(Float8BlockwiseLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return rows_padded(super().forward, x, self.block_size)

    return RowPaddedBlockwiseLinear


def traceable_blockwise_scaled_mm(mat_a: torch.Tensor, mat_b: torch.Tensor, scale_a: torch.Tensor, scale_recipe_a,
                                  scale_b: torch.Tensor, scale_recipe_b, out_dtype: torch.dtype) -> torch.Tensor:
    """torchao 0.18's blockwise `_scaled_mm`, always by the path it takes for DTensors: its custom op
    `torchao::blockwise_scaled_mm`, the same cuBLAS `_scaled_mm_v2` call with the same layouts and scale padding,
    but opaque to dynamo, so the compiled graph holds it without a break."""
    from torchao.prototype.blockwise_fp8_training.kernels import _scaling_type_value, blockwise_scaled_mm

    return blockwise_scaled_mm(mat_a, mat_b, scale_a, _scaling_type_value(scale_recipe_a), scale_b,
                               _scaling_type_value(scale_recipe_b), out_dtype)


ROWWISE_ROW_MULTIPLE = 16  # FP8 tensor-core GEMMs contract over multiples of 16: the weight gradient's is the rows


@functools.cache
def row_padded_float8_linear() -> type[nn.Module]:
    """torchao's rowwise `Float8Linear` taking any number of tokens (`rows_padded` to 16 rows); same parameter
    names. Its backward's weight-gradient GEMM contracts over the rows, and `torch._scaled_mm` refuses a
    contraction that is not a multiple of 16: the MTP module's B x (S - 1) rows failed on the H200 (torch 2.11,
    "Expected self.size(1) to be divisible by 16"). Under torch.compile inductor fuses its casts and scales."""
    from torchao.float8.float8_linear import Float8Linear

    class RowPaddedFloat8Linear(Float8Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return rows_padded(super().forward, x, ROWWISE_ROW_MULTIPLE)

    return RowPaddedFloat8Linear


# torchao's FP8 quantization kernels autotune large Triton config grids, compiling every config: the blockwise casts
# 45 per distinct K, the grouped experts' per-group scales 36. On a fresh H200 (torch 2.11, torchao 0.18) the first
# FP8 step was still tuning after 190 s, one grouped-scales tune alone took 57 s (stack dumps and Triton's own
# timings in docs/BENCHMARKS.md). They are memory-bound casts, where extra pipeline stages and 2 warps buy
# nothing: grids larger than MAX_QUANT_CONFIGS keep their fewest stages at 4 or 8 warps (45 -> 10, 36 -> 18).
# torchao narrows an autotuner's `.configs` the same way itself (its fused per-group scales kernel).
MAX_QUANT_CONFIGS = 8
QUANT_KERNEL_WARPS = (4, 8)
TORCHAO_QUANT_KERNELS = ("torchao.prototype.blockwise_fp8_training.kernels",
                         "torchao.prototype.moe_training.kernels.jagged_float8_scales")


def narrow_quant_autotuning(objects) -> int:
    """Prune the config grids of the Triton autotuners among `objects` that hold more than MAX_QUANT_CONFIGS to
    their fewest pipeline stages at QUANT_KERNEL_WARPS; returns how many changed. Only speed depends on the
    config, never values; idempotent."""
    changed = 0
    for obj in objects:
        configs = getattr(obj, "configs", None)
        if not isinstance(configs, list) or len(configs) <= MAX_QUANT_CONFIGS:
            continue
        if not all(hasattr(c, "num_stages") and hasattr(c, "num_warps") for c in configs):
            continue
        fewest = min(c.num_stages for c in configs)
        keep = [c for c in configs if c.num_stages == fewest and c.num_warps in QUANT_KERNEL_WARPS]
        if keep and len(keep) < len(configs):
            obj.configs = keep
            changed += 1
    return changed


def narrow_torchao_autotuning() -> int:
    """`narrow_quant_autotuning` over torchao's FP8 quantization kernel modules (those this torchao has)."""
    import importlib

    changed = 0
    for name in TORCHAO_QUANT_KERNELS:
        try:
            changed += narrow_quant_autotuning(vars(importlib.import_module(name)).values())
        except ImportError:  # another torchao layout: its own grids stay
            continue
    return changed


def fp8_grouped_mm(x: torch.Tensor, w_t: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """`torch._grouped_mm(x, w_t, offs=offs)` with both operands cast to FP8 (rowwise scales, torchao)."""
    from torchao.prototype.moe_training import _to_fp8_rowwise_then_scaled_grouped_mm

    # Groups arrive padded to multiples of 16 rows (`moe.padded_grouped`); torchao 0.18's own padding flag
    # defaults to True and is not implemented (it asserts), so it is turned off explicitly.
    return _to_fp8_rowwise_then_scaled_grouped_mm(x, w_t, offs=offs, out_dtype=torch.bfloat16,
                                                  pad_token_groups_for_grouped_mm=False)
