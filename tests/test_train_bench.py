"""bench/train_gpu.py runs end to end on CPU with the tiny preset (smoke test: numbers are not asserted)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_train_gpu_bench_smoke(tmp_path, monkeypatch):
    out = tmp_path / "train_gpu.json"
    argv = ["train_gpu.py", "--presets", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32", "--steps", "1",
            "--warmup", "0", "--loss-steps", "3", "--loss-batch", "2", "--loss-seq", "32", "--loss-lr", "0.003",
            "--grpo-problems", "2", "--group-size", "2", "--new-tokens", "4", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(REPO))
    import prover.train.sft as sft

    lrs, step = [], sft._train_step

    def train_step(model, opt, *a, **k):  # the lr each step runs at
        lrs.append(opt.param_groups[0]["lr"])
        return step(model, opt, *a, **k)

    monkeypatch.setattr(sft, "_train_step", train_step)  # the bench imports it by name when it runs
    try:
        runpy.run_path(str(REPO / "bench" / "train_gpu.py"), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    rows = {r["row"].split(" (")[0]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["model step"]["tokens_per_s"] > 0 and rows["SFT step fp32"]["tokens_per_s"] > 0
    assert rows["SFT step fp32"]["vs_model"] > 0
    assert "needs a CUDA GPU" in rows["SFT step fp8 blockwise"]["skipped"]  # no FP8 on a CPU: a reason, no numbers
    assert len(rows["loss curve tiny fp32"]["every_10"]) == 1
    assert lrs.count(0.003) == 3  # every step of the curve at --loss-lr (the scheduler had put 1e-5 back after one)
    assert {"GRPO generate", "GRPO score", "verify", "GRPO update", "GRPO iteration"} <= set(rows)
    assert "FAKE Lean" in next(r for r in json.loads(out.read_text())["rows"] if r["row"].startswith("verify"))["row"]


def test_grpo_rollout_bench_smoke(tmp_path, monkeypatch):
    """bench/grpo_rollout.py on CPU: every column filled, every candidate checked by the FAKE Lean."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import grpo_rollout

    out = tmp_path / "grpo_rollout.json"
    result = grpo_rollout.main(["--device", "cpu", "--problems", "2", "--group-size", "2", "--max-tokens", "4",
                                "--steps", "2", "--warmup", "0", "--lean-latency", "0.05", "--lean-workers", "1",
                                "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows == json.loads(json.dumps(result["rows"])) and len(rows) == 2
    for row in rows:
        assert row["candidates"] == 4 and row["infra"] == 0
        assert row["lean_s"] >= 4 * 0.05 and row["sum_s"] >= row["max_s"] > 0 and row["pipelined_s"] > 0


def test_profile_sorts_kernels_by_kind():
    """The profile's GPU time by kind: attention before GEMM (cuDNN's and flash's kernels name both), grouped
    expert GEMMs apart from dense ones, inductor's fused kernels, the rest."""
    kind = runpy.run_path(str(REPO / "bench" / "profiling.py"))["kernel_kind"]
    assert kind("cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x128_4x1x1_kernel0_0") == "attention"
    assert kind("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>") == "attention"
    assert kind("void cutlass::Kernel2<cutlass_80_wmma_grouped_gemm_bf16>") == "grouped GEMM"
    # torch._grouped_mm's CUTLASS kernel (mangled; the H200 profile of 2026-12-02 counted it as dense)
    assert kind("_ZN7cutlass13device_kernelINS_4gemm6kernel13GemmUniversalINS1_17GroupProblemShapeIN4cute5tupleIJiiiEEEEE"
                ) == "grouped GEMM"
    # QuACK's grouped GEMMs (moe_impl "quack"; H200 profile of 2026-12-03), with and without fused epilogues
    assert kind("kernel_cutlass_kernel_quackgemm_default_epiGemmDefaultSm90_object_at__TiledMMA_ThrLayoutVM") == (
        "grouped GEMM")
    assert kind("kernel_cutlass_kernel_quackepiloguefrontendGemmMod_dgated_epi_0f87edbf6a611f70_p_c_col_sm9") == (
        "grouped GEMM")
    assert kind("nvjet_tst_192x192_64x4_2x1_v_bz_coopB_NNT") == "dense GEMM"
    assert kind("triton_per_fused__to_copy_add_mean_mul_pow_rsqrt_0") == "fused (inductor / triton)"
    # inductor's autotuned GEMM templates (H200 profile of 2026-12-03: counted as fused kernels before)
    assert kind("triton_tem_fused_mm_t_transpose_view_9") == "dense GEMM"
    assert kind("triton_tem_fused__grouped_mm_transpose_7") == "grouped GEMM"
    assert kind("Memcpy DtoD (Device -> Device)") == "other"


def run_model_gpu(tmp_path, monkeypatch, rows: str, *flags: str) -> list[dict]:
    """bench/model_gpu.py's `rows` on CPU at the tiny preset, as a user runs it; its JSON rows."""
    argv = ["model_gpu.py", "--preset", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32", "--steps", "1",
            "--warmup", "0", "--rows", rows, *flags, "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(REPO))
    try:
        runpy.run_path(str(REPO / "bench" / "model_gpu.py"), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    return json.loads((tmp_path / "model_gpu.json").read_text())["rows"]


def test_model_gpu_bench_smoke(tmp_path, monkeypatch):
    """bench/model_gpu.py on CPU: transformers' row and ours, the speedup against it, `--profile-rows`' profile."""
    rows = {r["row"].split(" (")[0]: r for r in run_model_gpu(tmp_path, monkeypatch, "hf,eager", "--profile-rows")}
    hf, ours = rows["train: transformers DeepseekV3ForCausalLM"], rows["train: ours"]
    assert hf["tokens_per_s"] > 0 and ours["speedup_vs_transformers"] == ours["tokens_per_s"] / hf["tokens_per_s"]
    assert "profile" not in hf and ours["profile"]["wall_ms"] > 0
    assert any(op["op"].startswith("aten::") for op in ours["profile"]["top_host"])  # the step's own ops, profiled


def test_model_gpu_kernel_rows_on_cpu(tmp_path, monkeypatch):
    """bench/model_gpu.py's `attn` and `loss` rows on CPU: the plain paths timed with their errors against fp32
    (zero here: the bench dtype is fp32 on CPU), the sm90 kernels skipped with the reason."""
    rows = {r["row"].split(": ", 1)[1]: r for r in run_model_gpu(tmp_path, monkeypatch, "attn,loss")}
    assert set(rows) == {"sdpa", "fa4", "fa4+compile", "plain (logits + compiled cross-entropy)", "quack fused"}
    for plain in (rows["sdpa"], rows["plain (logits + compiled cross-entropy)"]):
        assert plain["ms"] > 0 and plain["rel_err_out"] < 1e-5 and plain["rel_err_grad"] < 1e-5
    assert "compute capability >= 9.0" in rows["fa4"]["skipped"] and "compute capability" in rows["quack fused"]["skipped"]


def test_model_gpu_optimizers_each_row_against_its_own_transformers_row(tmp_path, monkeypatch):
    """`--optimizers fused,compiled`: every training row twice, each compared with transformers' row under the same
    AdamW; the `adamw` row times the step alone both ways."""
    rows = {r["row"]: r for r in run_model_gpu(tmp_path, monkeypatch, "hf,eager,adamw", "--optimizers", "fused,compiled")}
    for label in ("", " [compiled AdamW]"):
        hf = rows["train: transformers DeepseekV3ForCausalLM" + label]
        ours = next(r for name, r in rows.items() if name.startswith("train: ours") and name.endswith(label or ")"))
        assert ours["speedup_vs_transformers"] == ours["tokens_per_s"] / hf["tokens_per_s"]
    alone = [r for name, r in rows.items() if name.startswith("AdamW step alone")]
    assert [r["row"].rsplit(": ", 1)[1] for r in alone] == ["fused", "compiled"]
    assert all(r["ms"] > 0 and r["gbps"] > 0 for r in alone)


def test_compiled_adamw_is_torchs_adamw():
    """The bench's "compiled" optimizer makes the same update as torch's AdamW (what the rows compare is speed)."""
    import torch

    from bench.model_gpu import make_adamw

    torch.manual_seed(0)
    ws = [torch.randn(8, 16), torch.randn(16)]
    grads = [torch.randn_like(w) for w in ws]
    got = [w.clone().requires_grad_() for w in ws]
    want = [w.clone().requires_grad_() for w in ws]
    step = make_adamw(got, "compiled", "cpu")
    ref = torch.optim.AdamW(want, lr=1e-5)
    for _ in range(3):
        for ps in (got, want):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        step()
        ref.step()
    for a, b, w in zip(got, want, ws, strict=True):
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, w)  # it did step
