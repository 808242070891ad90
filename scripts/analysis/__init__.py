"""Measurements about models and studies (FLOPs, feature geometry, training benchmarks, the ablation study),
for scripts/ and the tests: kept out of the installed package, which no training run, evaluation or
deployment needs them in. A script finds it as its neighbour; the tests put scripts/ on the path."""
