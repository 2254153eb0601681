#!/usr/bin/env bash
# GRPO on verl (Ray, FSDP actor, vLLM rollouts) for a checkpoint this project saved, rewarded by Subgoal's verifier.
#
#   CKPT=runs/sft/checkpoint PROBLEMS=minif2f-valid LEAN_URL=http://lean-box:8000 N_GPUS=8 \
#       bash recipes/verl_grpo.sh [more verl overrides, e.g. trainer.total_epochs=3]
#
# Needs `pip install 'subgoal[verl,serve]'` on the training nodes and `subgoal lean serve --host 0.0.0.0` on the
# CPU node(s) at LEAN_URL (without LEAN_URL every reward process starts a local REPL pool from the config).
# Reward: prover/train/verl_reward.py `compute_score_async` in verl's async reward loop (1.0 = proved).
set -euo pipefail
: "${CKPT:?set CKPT to an HF-format checkpoint directory saved by subgoal train}"
PROBLEMS=${PROBLEMS:-minif2f-valid}
OUT=${OUT:-runs/verl_grpo}
N_GPUS=${N_GPUS:-8}
NNODES=${NNODES:-1}
BATCH=${BATCH:-64}          # prompts per step
ROLLOUT_N=${ROLLOUT_N:-8}   # samples per prompt (the GRPO group)
TP=${TP:-1}                 # vLLM tensor parallel size per rollout engine
RESPONSE_LEN=${RESPONSE_LEN:-8192}
if [ -n "${LEAN_URL:-}" ]; then export SUBGOAL_LEAN__REMOTE_URL="$LEAN_URL"; fi

mkdir -p "$OUT"
python - "$PROBLEMS" "$OUT/train.parquet" <<'PY'
import sys

from data.registry import load_problems
from prover.train.verl_reward import prepare_dataset

print(f"{prepare_dataset(load_problems(sys.argv[1]), sys.argv[2])} problems -> {sys.argv[2]}")
PY
REWARD=$(python -c 'import prover.train.verl_reward as m; print(m.__file__)')

python -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    algorithm.use_kl_in_reward=False \
    data.train_files="$OUT/train.parquet" \
    data.val_files="$OUT/train.parquet" \
    data.train_batch_size="$BATCH" \
    data.max_prompt_length=1024 \
    data.max_response_length="$RESPONSE_LEN" \
    data.filter_overlong_prompts=True \
    actor_rollout_ref.model.path="$CKPT" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=$((BATCH / 4)) \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.actor.kl_loss_type=low_var_kl \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n="$ROLLOUT_N" \
    actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1 \
    reward.custom_reward_function.path="$REWARD" \
    reward.custom_reward_function.name=compute_score_async \
    reward.reward_manager.name=naive \
    trainer.logger='["console"]' \
    trainer.project_name=subgoal \
    trainer.experiment_name=grpo \
    trainer.n_gpus_per_node="$N_GPUS" \
    trainer.nnodes="$NNODES" \
    trainer.default_local_dir="$OUT/checkpoints" \
    trainer.save_freq=50 \
    trainer.test_freq=-1 \
    trainer.total_epochs=1 \
    "$@"
