"""GPU/CPU work: datasets, feature extraction and cache, the batched masked-head evaluator, OoD scoring."""
