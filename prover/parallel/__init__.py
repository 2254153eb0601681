"""Multi-GPU training for the DeepSeek-V3 MoE: expert parallelism (routed experts split over an EP group,
tokens exchanged with all-to-all) composed with FSDP2 for the dense parts; gather-on-save to the HF layout.

    model = parallelize(model, ep=4, device="cuda")   # under torchrun, after loading the full model
    ...
    grad_norm = clip_grad_norm_(model, 1.0)
    save_pretrained(model, "out")                      # rank 0 writes the usual HF DeepSeek-V3 checkpoint

Pipeline parallelism (DualPipeV stages, `prover.parallel.pipeline.Pipeline`) is imported from its module: it
pulls in `torch.distributed.pipelining`, which plain EP/FSDP runs do not need.
"""

from prover.parallel.checkpoint import (
    full_state_dict,
    gather_expert_state,
    local_expert_state,
    save_pretrained,
)
from prover.parallel.expert_parallel import (
    CommTimer,
    ExpertParallelExperts,
    all_to_all,
    gather_expert_weights,
    set_comm_timer,
    shard_experts,
)
from prover.parallel.fsdp import clip_coefficient, clip_grad_norm_, parallelize

__all__ = [
    "CommTimer",
    "ExpertParallelExperts",
    "all_to_all",
    "clip_coefficient",
    "clip_grad_norm_",
    "full_state_dict",
    "gather_expert_state",
    "gather_expert_weights",
    "local_expert_state",
    "parallelize",
    "save_pretrained",
    "set_comm_timer",
    "shard_experts",
]
