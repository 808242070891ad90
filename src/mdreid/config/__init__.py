"""The configuration: where it lives, how a command line is checked and composed, what it builds."""
