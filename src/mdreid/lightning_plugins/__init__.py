"""The Lightning parts a run plugs in: checkpoint IO, loggers, callbacks, progress, strategies."""
