"""The official MDReID optimisation recipe: per-parameter learning rates and the epoch-level cosine schedule."""
