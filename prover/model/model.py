"""The DeepSeek-V3 model: MLA + DeepSeekMoE decoder blocks (the first `first_k_dense_replace` dense), the LM
head, and `num_nextn_predict_layers` multi-token-prediction modules used for the MTP training loss.

Module names follow DeepSeek-V3's HF checkpoints (`model.layers.{i}.self_attn.q_a_proj`, ...), so
`checkpoint.py` only renames the stacked routed experts and the MTP modules (`mtp.{k}` <-> `model.layers.{N+k}`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prover.model import moe_quack
from prover.model.attention import MLA, LatentCache, RMSNorm, flex_block_mask, rope_cos_sin, rope_frequencies
from prover.model.config import ModelConfig
from prover.model.loss_quack import next_token_loss
from prover.model.moe import MLP, MoE, RoutedExperts, Router

Generator = torch.Generator | list[torch.Generator | None]  # one for a batch, or one per row


@dataclass
class CausalLMOutput:
    logits: torch.Tensor | None  # None when the fused loss ran instead (`DeepSeekV3.set_loss_impl("quack")`)
    loss: torch.Tensor | None = None  # lm_loss + mtp_loss_weight * mtp_loss + aux_loss
    lm_loss: torch.Tensor | None = None
    mtp_loss: torch.Tensor | None = None  # mean over MTP depths (unweighted)
    aux_loss: torch.Tensor | None = None  # sequence-wise balance loss summed over layers (already * alpha)
    cache: LatentCache | None = None
    hidden_states: torch.Tensor | None = None  # final normed hidden states


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.self_attn = MLA(cfg, layer_idx)
        self.mlp: nn.Module = MoE(cfg) if cfg.is_moe_layer(layer_idx) else MLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: LatentCache | None = None, token_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        h = self.post_attention_layernorm(x)
        if isinstance(self.mlp, MoE):
            y, aux = self.mlp(h, token_mask)
            return x + y, aux
        return x + self.mlp(h), None


class SharedHeadNorm(nn.Module):
    """`shared_head`: its own norm; the head itself is the main model's `lm_head` (copied into checkpoints)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MTPLayer(Block):
    """Depth-k MTP module: h' = eh_proj([enorm(emb(t_{i+k})); hnorm(h_i)]), one block, shared_head.norm, head."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__(cfg, layer_idx)
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.shared_head = SharedHeadNorm(cfg)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepSeekV3(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        N = config.num_hidden_layers
        self.mtp = nn.ModuleList(MTPLayer(config, N + k) for k in range(config.num_nextn_predict_layers))
        inv_freq, self.rope_scale = rope_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.reset_parameters()

    # ------------------------------------------------------------------------------------------- setup
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, initializer_range) for every matrix, ones for norms, zero selection bias."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                if m.weight.device.type != "meta":
                    m.weight.normal_(0.0, std)
                if getattr(m, "bias", None) is not None and m.bias.device.type != "meta":
                    m.bias.zero_()
            elif isinstance(m, RoutedExperts) and m.gate_up_proj.device.type != "meta":
                m.gate_up_proj.normal_(0.0, std)
                m.down_proj.normal_(0.0, std)
            elif isinstance(m, Router) and m.weight.device.type != "meta":
                m.weight.normal_(0.0, std)
                m.e_score_correction_bias.zero_()
            elif isinstance(m, RMSNorm) and m.weight.device.type != "meta":
                m.weight.fill_(1.0)

    def compile_blocks(self, **compile_kwargs: Any) -> DeepSeekV3:
        """torch.compile each decoder block (identical blocks share one compiled graph) and the loss; the
        Python loop over layers, the cache and generation stay eager."""
        if any(layer.impl == "quack" for layer in self.moe_layers()):
            # Imported now, not while torch.compile traces the experts: an import there is a graph break that the
            # compiled block keeps (the experts' backward then ran eagerly: its sum over copies alone 2.3 ms a step at
            # `small` on the H200).
            moe_quack.kernels()
        for block in [*self.model.layers, *self.mtp]:
            block.compile(**compile_kwargs)
        self._loss = torch.compile(causal_lm_loss, **compile_kwargs)
        return self

    def set_attention(self, impl: str) -> None:
        """"sdpa" (default: torch's SDPA picks flash/cuDNN/efficient) | "flex" (FlexAttention with a BlockMask;
        fast only compiled, e.g. under `compile_blocks`) | "fa4" (FlashAttention-4's kernels for plain causal
        calls, SDPA for masked ones; CUDA sm90+, `attention_fa4.py`) for training and prefill; decode steps stay
        absorbed."""
        if impl not in ("sdpa", "flex", "fa4"):
            raise ValueError(f"unknown attention {impl!r} (sdpa, flex, fa4)")
        self.attention = impl
        for m in self.modules():
            if isinstance(m, MLA):
                m.fa4 = impl == "fa4"

    def set_fusions(self, on: bool = True) -> None:
        """Fused GEMMs with unchanged checkpoint names: q_a/kv_a projections (MLA), gate/up (dense MLP and shared
        experts)."""
        for m in self.modules():
            if isinstance(m, MLA):
                m.fuse_a_proj = on
            elif isinstance(m, MLP):
                m.fuse_gate_up = on

    def set_loss_impl(self, impl: str) -> None:
        """"auto" (the head's logits, then the compiled cross-entropy) | "quack" (head and cross-entropy fused on
        QuACK's kernels, no logits made when training; CUDA sm90+, `loss_quack.py`)."""
        if impl not in ("auto", "quack"):
            raise ValueError(f"unknown loss_impl {impl!r} (auto, quack)")
        self.loss_impl = impl

    def set_moe_impl(self, impl: str) -> None:
        """Every MoE layer's routed experts on path `impl` (`ModelConfig.moe_impl`'s values), e.g. "quack"."""
        self.config = self.config.replace(moe_impl=impl)  # validated there; config.json never carries it
        for layer in self.moe_layers():
            layer.impl = impl

    def moe_layers(self, include_mtp: bool = True) -> list[MoE]:
        blocks = list(self.model.layers) + (list(self.mtp) if include_mtp else [])
        return [b.mlp for b in blocks if isinstance(b.mlp, MoE)]

    # ------------------------------------------------------------------------------------------- sizes
    def num_parameters(self, include_mtp: bool = False, include_embedding: bool = True) -> int:
        """Distinct parameters. The MTP modules share the embedding and head with the main model (the
        released checkpoint stores copies of both, about 1.85B more for DeepSeek-V3)."""
        total = 0
        for name, p in self.named_parameters():
            if name.startswith("mtp.") and not include_mtp:
                continue
            if name == "model.embed_tokens.weight" and not include_embedding:
                continue
            total += p.numel()
        return total

    def num_active_parameters(self, include_embedding: bool = True, include_mtp: bool = False) -> int:
        """Parameters a token passes through: everything but the routed experts, plus `num_experts_per_tok`
        of each MoE layer's routed experts."""
        cfg = self.config
        routed = sum(m.experts.gate_up_proj.numel() + m.experts.down_proj.numel()
                     for m in self.moe_layers(include_mtp))
        active_routed = routed * cfg.num_experts_per_tok // cfg.n_routed_experts
        return self.num_parameters(include_mtp, include_embedding) - routed + active_routed

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: LatentCache | None = None, logits_to_keep: int = 0, right_padded: bool = False,
                ) -> CausalLMOutput:
        """input_ids [B, S]; labels [B, S] (shifted inside, -100 ignored); attention_mask [B, T] with T = tokens
        in the cache plus S (1 = real token; left padding allowed); `cache` for incremental decoding.
        `logits_to_keep=n` computes logits for the last n positions only (0 = all). `right_padded=True` (pads
        only after each row's last real token, as training batches are): a causal query never sees the pads
        after it, so attention stays plain causal (the fused kernel, no [B, S, S] mask) and `attention_mask`
        only keeps pads out of the routers' load; outputs and gradients at real tokens are the same."""
        B, S = input_ids.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None and not right_padded:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -S:]
            else:
                position_ids = torch.arange(past, past + S, device=input_ids.device).unsqueeze(0).expand(B, S)
        mask = self._mask(B, S, past, None if right_padded and past == 0 else attention_mask, input_ids.device,
                          flex=False if cache is not None else None)
        cos, sin = rope_cos_sin(self.inv_freq, self.rope_scale, position_ids)
        h = self.model.embed_tokens(input_ids)
        aux_total = None
        token_mask = attention_mask[:, -S:].bool() if attention_mask is not None else None  # padding is not load
        for layer in self.model.layers:
            h, aux = layer(h, cos, sin, mask, cache, token_mask)
            aux_total = aux if aux_total is None else (aux_total if aux is None else aux_total + aux)
        if cache is not None:
            cache.advance(S)
        hidden = self.model.norm(h)
        # The fused loss never makes the logits (`set_loss_impl`); everything else does.
        fused = labels is not None and self.loss_impl == "quack" and cache is None and not logits_to_keep
        logits = None if fused else self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        out = CausalLMOutput(logits=logits, cache=cache, hidden_states=hidden, aux_loss=aux_total)
        if labels is None:
            return out
        out.lm_loss = self._head_loss(hidden, labels, logits)
        loss = out.lm_loss
        if len(self.mtp) and self.config.mtp_loss_weight > 0:
            out.mtp_loss, mtp_aux = self._mtp_loss(hidden, input_ids, labels, attention_mask, position_ids,
                                                   right_padded=right_padded)
            loss = loss + self.config.mtp_loss_weight * out.mtp_loss
            if mtp_aux is not None:
                aux_total = mtp_aux if aux_total is None else aux_total + mtp_aux
        if aux_total is not None:
            out.aux_loss = aux_total
            loss = loss + aux_total
        out.loss = loss
        return out

    attention = "sdpa"  # see set_attention
    loss_impl = "auto"  # see set_loss_impl

    def _head_loss(self, hidden: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None):
        """The next-token loss of the output head over `hidden` (normed): the (compiled, `compile_blocks`)
        cross-entropy of `logits` where given, else fused with the head on QuACK's kernels
        (`set_loss_impl("quack")`) or of logits made here."""
        if logits is None and self.loss_impl == "quack":
            return next_token_loss(hidden, self.lm_head.weight, labels)
        logits = self.lm_head(hidden) if logits is None else logits
        return getattr(self, "_loss", causal_lm_loss)(logits, labels)

    def _mask(self, B: int, S: int, past: int, attention_mask: torch.Tensor | None,
              device: torch.device, flex: bool | None = None) -> torch.Tensor | None:
        """None means plain causal (SDPA's is_causal); else bool [B, 1, S, past + S]; a FlexAttention BlockMask
        when `flex` (default: `attention == "flex"`; never with a cache)."""
        if past == 0 and (self.attention == "flex" if flex is None else flex):
            return flex_block_mask(B, S, attention_mask, device)
        if past == 0 and attention_mask is None:
            return None
        T = past + S
        q_pos = torch.arange(past, T, device=device).unsqueeze(1)
        allowed = (torch.arange(T, device=device).unsqueeze(0) <= q_pos).unsqueeze(0).expand(B, S, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, -T:].bool().unsqueeze(1)
            # A query that may see nothing (a left-pad position) sees itself: avoids NaN rows that would
            # otherwise leak into later layers through the padded values.
            allowed = allowed | (torch.arange(T, device=device).unsqueeze(0) == q_pos).unsqueeze(0)
        return allowed.unsqueeze(1)

    def _mtp_loss(self, hidden: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor,
                  attention_mask: torch.Tensor | None, position_ids: torch.Tensor,
                  right_padded: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Depth k sees h_i (k-1 levels deep) and the embedding of token i+k, and predicts token i+k+1.
        `right_padded`: as in `forward` (the shifted valid mask is right-padded too)."""
        losses, aux_total = [], None
        h = hidden
        for k, layer in enumerate(self.mtp, start=1):
            S = input_ids.shape[1] - k
            if S < 2:
                break
            emb = self.model.embed_tokens(input_ids[:, k:])
            x = layer.eh_proj(torch.cat((layer.enorm(emb), layer.hnorm(h[:, :S])), dim=-1))
            mask = valid = None
            if attention_mask is not None:
                valid = attention_mask[:, :S].bool() & attention_mask[:, k:].bool()
                mask = self._mask(x.shape[0], S, 0, None if right_padded else valid, x.device)
            cos, sin = rope_cos_sin(self.inv_freq, self.rope_scale, position_ids[:, :S])
            h, aux = layer(x, cos, sin, mask, token_mask=valid)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
            losses.append(self._head_loss(layer.shared_head.norm(h), labels[:, k:]))
        if not losses:
            return hidden.new_zeros(()), aux_total
        return torch.stack(losses).mean(), aux_total

    # ------------------------------------------------------------------------------------------- decoding
    def new_cache(self, batch_size: int, max_len: int) -> LatentCache:
        p = self.lm_head.weight
        return LatentCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 32, attention_mask: torch.Tensor | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int | None = None, generator: Generator | None = None,
                 on_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Prefill + one token per step with the latent cache. Greedy at temperature 0. Returns the prompt
        followed by the new tokens ([B, S + n]); finished rows are padded with `pad_token_id` (else eos).
        `generator`: one for the batch, or a list with one per row (a row's draws then do not depend on its batch).
        `on_step(tokens, done)`, after each step: returns `done` with the rows the caller ends (a stop string)."""
        B, S = input_ids.shape
        eos = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else (eos or []), device=input_ids.device)
        pad = pad_token_id if pad_token_id is not None else (int(eos_ids[0]) if len(eos_ids) else 0)
        cache = self.new_cache(B, S + max_new_tokens)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        out, tokens = input_ids, input_ids
        done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits = self(tokens, attention_mask=mask, cache=cache, logits_to_keep=1).logits[:, -1].float()
            nxt = sample_next(logits, temperature, top_p, generator)
            out = torch.cat((out, torch.where(done, torch.full_like(nxt, pad), nxt)[:, None]), dim=1)
            if len(eos_ids):
                done = done | torch.isin(nxt, eos_ids)
            if on_step is not None:
                done = on_step(nxt, done)
            if (len(eos_ids) or on_step is not None) and bool(done.all()):
                break
            tokens = nxt[:, None]  # finished rows keep decoding (discarded): the batch stays rectangular
            mask = torch.cat((mask, torch.ones_like(tokens)), dim=1)
        return out

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | Path, tokenizer: Any = None, max_shard_size: int = 5 * 2**30,
                        dtype: torch.dtype | None = None) -> Path:
        from prover.model.checkpoint import save_pretrained

        return save_pretrained(self, directory, tokenizer=tokenizer, max_shard_size=max_shard_size, dtype=dtype)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, **config_overrides: Any) -> DeepSeekV3:
        from prover.model.checkpoint import load_pretrained

        return load_pretrained(cls, directory, device=device, dtype=dtype, **config_overrides)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits[:, i] predicts labels[:, i + 1]; -100 is ignored."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                generator: Generator | None = None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = (logits / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    if isinstance(generator, (list, tuple)):  # a generator per row (None rows draw from the global one)
        return torch.stack([torch.multinomial(probs[r], 1, generator=g)[0] for r, g in enumerate(generator)])
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
