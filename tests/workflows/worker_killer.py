"""A Dask worker plugin that kills its own worker process when a chosen task starts (tests of a batch
that survives a dead worker).

It lives in a module of its own (not a test module), which the spawned worker processes import by
name: pytest puts this folder on ``sys.path`` when it imports the conftest beside it, and a spawned
process starts with its parent's ``sys.path``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from distributed import WorkerPlugin


class KillOnTask(WorkerPlugin):
    """SIGKILL the worker's own process when a task whose key starts with ``prefix`` starts executing.

    Each kill first creates a file in ``record`` (so the test counts them); with ``once``, only the
    first matching task kills (the file ``record/once`` marks that it happened), later ones run.
    """

    def __init__(self, prefix: str, record: str | os.PathLike[str], once: bool) -> None:
        self.prefix, self.record, self.once = prefix, str(record), once

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or not str(key).startswith(self.prefix):
            return
        name = "once" if self.once else f"kill-{os.getpid()}-{str(key)}"
        try:
            fd = os.open(os.path.join(self.record, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # killed once already
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would


def kills(record: Path) -> list[str]:
    """The kills ``record`` holds."""
    return sorted(p.name for p in record.iterdir())
