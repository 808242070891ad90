"""Data layer: benchmark readers, synthetic data, transforms, samplers and the DataModule."""
