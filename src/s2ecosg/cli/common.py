"""What every command shares: the run's config, the log file, one-line errors and the SIGTERM exit.

Heavy libraries (torch 2.7 s, rasterio 0.3 s to import on the CI machine) are imported inside the commands that
use them, so that ``s2ecosg --help`` and the light commands start at once; every other import is at the top.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from s2ecosg.config import Config
from s2ecosg.config_files import read_config_file, validate_sections
from s2ecosg.errors import InputError
from s2ecosg.grid import TargetGrid
from s2ecosg.log import crash_if_asked, exit_on_sigterm, one_line, setup_logging

LOG = logging.getLogger("s2ecosg")
# --log-path is the same option under a name no launcher mistakes for an abbreviation of its own --log-* options
# (torchrun and horovodrun parse the whole command line; the train rule uses it behind them).
log_option = click.option(
    "--log", "--log-path", "log_path", type=click.Path(dir_okay=False), help="Log file (also to stderr)."
)


def command(function: Callable[..., Any] | None = None, *, append_log: bool = False) -> Any:
    """Set up logging and SIGTERM; every error ends the command with one line on stderr and exit status 1.

    A mistake a user can fix (:class:`InputError`, a file that cannot be read or written) is that one line,
    naming the file or key and the problem. Anything else is one line too, naming the log file that holds
    the traceback (a traceback is for developers: it goes to the log, never to the terminal). With
    ``append_log`` the log file keeps its history (``@command(append_log=True)``).
    """
    if function is None:
        return functools.partial(command, append_log=append_log)

    @functools.wraps(function)
    def wrapper(*args: Any, log_path: str | None = None, **kwargs: Any) -> Any:
        setup_logging(log_path, append=append_log)
        exit_on_sigterm()
        crash_if_asked(function.__name__.removesuffix("_command"))
        try:
            return function(*args, **kwargs)
        except Exception as error:  # the one place where every error becomes one line
            LOG.error("error: %s", one_line(error))
            sys.exit(1)

    return wrapper


def with_config(function: Callable[..., Any]) -> Any:
    """Give a command the run's whole config as ``config``, from ``--config`` or ``--settings``.

    The workflow passes ``--run-config results/<run>/config/<run hash>.json``: the whole validated config, the
    same for every job of the run (``--config`` is the same option; the rules use the longer name because
    horovodrun would take ``--config`` for an abbreviation of its ``--config-file``). ``--settings`` takes config
    sections as JSON text (by hand, in tests); sections it does not name take their defaults, as in a config file
    that does not set them.
    """

    @click.option(
        "--run-config", "--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="Config file."
    )
    @click.option("--settings", default=None, help="Config sections as JSON text; the others take defaults.")
    @functools.wraps(function)
    def wrapper(*args: Any, config_file: str | None = None, settings: str | None = None, **kwargs: Any) -> Any:
        return function(*args, config=command_config(config_file, settings), **kwargs)

    return wrapper


def command_config(config_file: str | None, settings: str | None) -> Config:
    """The config of ``--config`` (validated whole), else of ``--settings`` (its sections; the rest defaults)."""
    if config_file:
        return read_config_file(config_file)
    try:
        raw = json.loads(settings or "{}")
    except ValueError as error:
        raise InputError("--settings", f"not JSON ({error})") from error
    return validate_sections(raw)


def grid_of(config: Config) -> TargetGrid:
    """The :class:`~s2ecosg.grid.TargetGrid` of a config."""
    return TargetGrid(config.grid.crs, config.grid.resolution, config.grid.tile_size)
