"""How a run runs: config location, Hydra helpers, errors, files, logs, strategies and the builders shared
by every entry point."""
