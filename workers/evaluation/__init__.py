"""Evaluation: the batched masked-head evaluator, its Ray actor, head layout, OoD scoring and re-training."""
