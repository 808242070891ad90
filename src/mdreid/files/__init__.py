"""Files written and read safely: atomic writes, hashes, portable paths, torch files opened as data."""
