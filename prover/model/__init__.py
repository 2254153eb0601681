"""The DeepSeek-V3 architecture in PyTorch (MLA, DeepSeekMoE, MTP), HF-layout checkpoints, balancing.

    from prover.model import ModelConfig, DeepSeekV3
    model = DeepSeekV3(ModelConfig.preset("tiny"))
    out = model(input_ids, labels=input_ids)   # .logits, .loss, .mtp_loss
    model.save_pretrained("ckpt")              # loads in transformers.AutoModelForCausalLM and vLLM
"""

from prover.model.attention import LatentCache
from prover.model.config import ModelConfig, ModelConfigError
from prover.model.model import CausalLMOutput, DeepSeekV3

__all__ = ["CausalLMOutput", "DeepSeekV3", "LatentCache", "ModelConfig", "ModelConfigError"]
