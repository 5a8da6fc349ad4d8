"""Steering a Hugging Face model: SAE loading, the plan, hooks, the lm-eval model (torch)."""
