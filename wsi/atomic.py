"""Atomic file output: write to a temporary file beside the target, then rename onto it.

Readers never see a half-written file, and a failure leaves the previous file (or nothing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["atomic_path"]


class atomic_path:
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    Examples
    --------
    >>> with atomic_path("plan.parquet") as temporary:          # doctest: +SKIP
    ...     table.to_parquet(temporary)
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.close(handle)
        self._temporary = Path(name)
        return self._temporary

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            os.replace(self._temporary, self.path)
        else:
            self._temporary.unlink(missing_ok=True)
