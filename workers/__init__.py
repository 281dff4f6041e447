"""GPU/CPU work in four parts: features, evaluation (the batched evaluator), export and analysis."""
