"""Loaders that keep the model busy: batches made in spawned worker processes, prefetched.

Both frameworks draw the same batches (a :class:`~slidescope.models.batches.BatchMaker` turns a key
``(epoch, batch)`` into numpy arrays in a worker; the workers open their slides once, through the
slide cache, and keep them open across epochs):

- torch: a ``DataLoader`` over the keys, with persistent workers, ``prefetch_factor`` batches per
  worker, and the ``spawn`` start method (torch and TensorFlow hang in forked children once the
  parent ran them);
- TensorFlow: a pool of spawned processes feeding ``tf.data.Dataset.from_generator`` with a
  sliding window of ``workers * prefetch`` batches in flight, then ``prefetch``.

With ``workers=0`` batches are made in this process (tests, debugging).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .batches import BatchMaker

__all__ = ["Loader"]

_MAKER: BatchMaker | None = None  # the batch maker of a TensorFlow pool worker process


def _init_worker(maker: BatchMaker) -> None:
    global _MAKER
    _MAKER = maker


def _make(key: tuple[int, int]) -> dict[str, np.ndarray]:
    assert _MAKER is not None, "pool worker without a batch maker"
    return _MAKER(key)


def _identity(batch: Any) -> Any:
    return batch


class _KeyDataset:
    """A map-style dataset whose indices are batch keys (torch's ``DataLoader`` with ``batch_size=None``)."""

    def __init__(self, maker: BatchMaker):
        self.maker = maker

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        return self.maker(tuple(key))  # type: ignore[arg-type]

    def __len__(self) -> int:  # the sampler, not the dataset, decides what is read
        return 0


class _Keys:
    """A sampler whose keys change each epoch, while the loader (and its workers) persist."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)


class Loader:
    """Batches of one :class:`BatchMaker` for one framework, made ahead in worker processes.

    Parameters
    ----------
    maker : BatchMaker
    framework : {"torch", "tf"}
    workers : int
        Worker processes (0: make batches in this process).
    prefetch : int
        Batches made ahead per worker (at least 2).
    pin_memory : bool
        torch on CUDA: page-locked batches.
    """

    def __init__(self, maker: BatchMaker, framework: str, workers: int, prefetch: int = 2,
                 pin_memory: bool = False) -> None:
        self.maker, self.framework, self.workers, self.prefetch = maker, framework, workers, max(2, prefetch)
        self._pool: Any = None
        self._torch: Any = None
        self._keys = _Keys()
        self.pin_memory = pin_memory

    def batches(self, keys: Sequence[tuple[int, int]]) -> Iterator[dict[str, np.ndarray]]:
        """The batches of ``keys``, in order."""
        if self.workers == 0:
            return (self.maker(key) for key in keys)
        if self.framework == "torch":
            return self._torch_batches(keys)
        return self._tf_batches(keys)

    def _torch_batches(self, keys: Sequence[tuple[int, int]]) -> Iterator[dict[str, np.ndarray]]:
        if self._torch is None:
            from torch.utils.data import DataLoader

            self._torch = DataLoader(_KeyDataset(self.maker), batch_size=None, sampler=self._keys,
                                     num_workers=self.workers, persistent_workers=True,
                                     prefetch_factor=self.prefetch, collate_fn=_identity,
                                     multiprocessing_context=multiprocessing.get_context("spawn"),
                                     pin_memory=False)
        self._keys.keys = list(keys)
        for batch in self._torch:
            if self.pin_memory:
                import torch

                batch = {k: torch.from_numpy(v).pin_memory().numpy() for k, v in batch.items()}
            yield batch

    def _window(self, keys: Sequence[tuple[int, int]]) -> Iterator[dict[str, np.ndarray]]:
        """Results of ``keys`` from the pool, in order, with ``workers * prefetch`` in flight."""
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(self.workers, _init_worker, (self.maker,))
        pending: deque[Any] = deque()
        queue = iter(keys)
        for key in queue:
            pending.append(self._pool.apply_async(_make, (key,)))
            if len(pending) >= self.workers * self.prefetch:
                break
        while pending:
            result = pending.popleft().get()
            for key in queue:
                pending.append(self._pool.apply_async(_make, (key,)))
                break
            yield result

    def _tf_batches(self, keys: Sequence[tuple[int, int]]) -> Iterator[dict[str, np.ndarray]]:
        import tensorflow as tf

        size = self.maker.size
        signature = {"images": tf.TensorSpec((None, size, size, 3), tf.uint8)}
        if self.maker.task == "tissue":
            signature["labels"] = tf.TensorSpec((None,), tf.int64)
        else:
            signature["heatmap"] = tf.TensorSpec((None, size, size), tf.float32)
            signature["types"] = tf.TensorSpec((None, size, size), tf.int64)
        dataset = tf.data.Dataset.from_generator(lambda: self._window(keys), output_signature=signature)
        yield from dataset.prefetch(self.prefetch).as_numpy_iterator()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        self._torch = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
