"""The prover: model (DeepSeek-V3 architecture), generation backends, prompts, search, batch proving, training."""
