"""User-facing errors: one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input the user can fix: printed as ``<file>: <problem>`` without a traceback.

    Args:
        source: The file (or config key) at fault.
        problem: What is wrong with it, in one line.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem.replace("\n", " ")
        super().__init__(f"{self.source}: {self.problem}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        """Pickled with both arguments, so an error raised in a worker process reaches the parent intact."""
        return InputError, (self.source, self.problem)


class WorkerDied(InputError):
    """A worker process of a command died without an answer (a native crash, the out-of-memory killer).

    Not a mistake of the user's, but one line all the same: the worker's Python stacks are in the log it names.
    """
