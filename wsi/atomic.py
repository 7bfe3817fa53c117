"""Atomic file output: write to a temporary file beside the target, then rename onto it.

Readers never see a half-written file, and a failure leaves the previous file (or nothing).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["atomic_path"]


class atomic_path:
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    The temporary path is not created: the writer creates it (file or folder), so it gets the
    usual permissions, and it keeps the target's suffix (``.mask.1a2b.partial.png``), so
    writers that choose the format from the suffix (OpenCV, tifffile) work. On failure it is
    removed, whatever it is.

    Examples
    --------
    >>> with atomic_path("plan.parquet") as temporary:          # doctest: +SKIP
    ...     table.to_parquet(temporary)
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:12]}.partial{self.path.suffix}")
        return self._temporary

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            if not self._temporary.exists():
                raise FileNotFoundError(f"{self.path}: nothing was written to the temporary {self._temporary}")
            os.replace(self._temporary, self.path)
        elif self._temporary.is_dir():
            shutil.rmtree(self._temporary, ignore_errors=True)
        else:
            self._temporary.unlink(missing_ok=True)
