"""Command-line overrides Hydra cannot parse, as one ``error:`` line that shows the quoting.

A path with a space arrives split in two arguments (``data.manifest=/data/my`` and ``site/m.csv``), and one
with a non-ASCII character (``/data/café``) stops Hydra's lexer; Hydra then prints a grammar message and exits
with 1. Both need the value quoted for Hydra inside quotes for the shell: ``"data.manifest='/data/my site/m.csv'"``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mdreid.process.errors import MDReIDError, cli_errors

F = TypeVar("F", bound=Callable[..., Any])


def _quoted(override: str) -> str:
    """``override`` with its value in Hydra quotes, inside shell double quotes."""
    key, value = override.split("=", 1)
    return f"\"{key}='{value}'\""


def _problem(overrides: Sequence[str], index: int, reason: str) -> str:
    """The error line for ``overrides[index]``, which Hydra's grammar rejected with ``reason``."""
    override = overrides[index]
    before = overrides[index - 1] if index > 0 else ""
    if "=" not in override and "=" in before:  # the rest of a value cut at a space by the shell
        return (
            f"cannot read the override {override!r}: it looks like the rest of {before!r} cut at a space; "
            f"quote a value with spaces or non-ASCII characters for Hydra and the shell: "
            f"{_quoted(f'{before} {override}')}"
        )
    hint = (
        f"; quote a value with spaces or non-ASCII characters for Hydra and the shell: {_quoted(override)}"
        if "=" in override
        else "; overrides are key=value"
    )
    return f"cannot read the override {override!r} (Hydra: {reason}){hint}"


def check_overrides(overrides: Sequence[str]) -> None:
    """Raise ``MDReIDError`` for the first override that Hydra's override grammar rejects."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for index, override in enumerate(overrides):
        try:
            parser.parse_overrides([override])
        except OverrideParseException as err:
            reason = str(err).strip().splitlines()[0]
            raise MDReIDError(_problem(overrides, index, reason)) from err


# Hydra flags after which nothing is run: the config need not be complete
_NO_RUN_FLAGS = ("help", "hydra_help", "info", "shell_completion", "cfg", "resolve")


@cli_errors
def _check_argv(argv: Sequence[str], config_name: str) -> None:
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(list(argv))
    except SystemExit:  # a malformed flag: Hydra reports it itself
        return
    check_overrides(args.overrides)
    if any(getattr(args, flag, None) for flag in _NO_RUN_FLAGS) or args.config_path or args.config_dir:
        return
    from mdreid.config.check import check_command_line

    name = args.config_name or config_name
    check_command_line(
        name, args.overrides, bool(args.multirun), f"python -m mdreid.{name.removesuffix('.yaml')}"
    )


def checked_overrides(config_name: str) -> Callable[[F], F]:
    """Wrap the ``hydra.main`` entry point of ``config_name``: called as the CLI (no arguments), check
    ``sys.argv`` first, so that an override Hydra cannot parse, a key the config lacks (with or without
    ``+``), an unknown group option or a mandatory value not given ends in one ``error:`` line and exit code
    2 (``mdreid.config.check``)."""

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:
                _check_argv(sys.argv[1:], config_name)
            return main(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return wrap
