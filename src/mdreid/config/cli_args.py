"""argparse for mdreid's plain (non-Hydra) CLIs, with its errors as the project's one ``error:`` line.

argparse's own report is a usage block plus ``prog: error: ...``; here a misspelt option (``--roots``, or a
Hydra-style ``+root=...`` given to a CLI of flags) is one line naming the closest known option, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from mdreid.config.keys import closest


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` and of its sub-commands."""
    found = [s for s in parser._option_string_actions if s.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _options(sub)
    return list(dict.fromkeys(found))


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (sub-commands included) whose errors are one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments: "):
            for word in message.removeprefix("unrecognized arguments: ").split():
                name = word.split("=", 1)[0].lstrip("+-~").replace("_", "-")
                near = closest(f"--{name}", _options(self))
                if near is not None:
                    hint = f"; did you mean {near}?"
                    break
        print(f"error: {self.prog}: {message}{hint} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
