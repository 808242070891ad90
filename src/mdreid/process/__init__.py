"""A run as an operating-system process: its errors and exit codes, signals, folder, lock and console."""
