"""Where an evaluation result goes: console tables, metrics files, plots and logger media."""
