"""Measurements about models and studies (FLOPs, feature geometry, training benchmarks, the ablation report),
used by scripts/ and the tests rather than by a training run."""
