"""Writing a merged model: its directory (card, weights) and its exported artifacts, each checked.

:func:`write_merged` builds the directory beside its target and renames it into place when
everything in it is written and checked: the weights reload into a fresh graph that gives the
same outputs, and every export is loaded back (``torch.export.load`` for ``.pt2``, onnxruntime for
ONNX, TensorFlow for a SavedModel) and run on sample tiles, its outputs within
:data:`EXPORT_TOLERANCE` of the graph's. A failed check leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import OutputError, OutputExistsError, ParameterError

from .checkpoint import file_sha256
from .errors import CheckpointError
from .merged import CARD_FILE, MergedCard, SlideModel, graph_class, is_merged_directory

__all__ = ["write_merged", "check_merged_out", "check_exports", "EXPORT_TOLERANCE", "EXPORTS", "sample_inputs",
           "compare_outputs"]

#: Largest difference allowed between an export's outputs and the graph's.
EXPORT_TOLERANCE = 1e-5
#: Export formats per framework: name -> file.
EXPORTS = {"torch": {"pt2": "model.pt2", "onnx": "model.onnx"},
           "tf": {"savedmodel": "savedmodel", "onnx": "model.onnx"}}


def sample_inputs(card: MergedCard, coarse_tiles: int = 3, fine_tiles: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Seeded tiles that look like tissue (pink, with dark blobs), for checking exports."""
    rng = np.random.default_rng(seed)

    def tiles(count: int, size: int) -> np.ndarray:
        base = np.array([225, 170, 200], np.float32) + rng.normal(0, 12, (count, size, size, 3))
        yy, xx = np.mgrid[:size, :size]
        for i in range(count):
            for _ in range(size // 12):
                cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(3, 7))]
                base[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (90, 50, 140)
        return np.clip(base, 0, 255).astype(np.uint8)

    coarse = tiles(coarse_tiles, card.tissue.input.size)
    fine = tiles(fine_tiles, card.cell.input.size)
    parents = (np.arange(fine_tiles) % coarse_tiles).astype(np.int64)
    return coarse, fine, parents, np.ones(fine_tiles, np.float32)


def compare_outputs(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], what: str,
                    tolerance: float = EXPORT_TOLERANCE) -> float:
    """The largest difference between two output sets; a :class:`CheckpointError` above ``tolerance``."""
    worst = 0.0
    for name, value in expected.items():
        if name not in got:
            raise CheckpointError(f"{what}: the output {name!r} is missing")
        other = np.asarray(got[name])
        if other.shape != value.shape:
            raise CheckpointError(f"{what}: output {name!r} has shape {other.shape}, expected {value.shape}")
        difference = float(np.max(np.abs(other.astype(np.float64) - value.astype(np.float64)))) if value.size else 0.0
        if not difference <= tolerance:
            raise CheckpointError(f"{what}: output {name!r} differs from the graph's by {difference:.3g} "
                                  f"(at most {tolerance:g} allowed)")
        worst = max(worst, difference)
    return worst


def check_exports(framework: str, exports: Any) -> tuple[str, ...]:
    """The export formats asked for (all of :data:`EXPORTS` for ``framework`` when None), or a
    :class:`ParameterError` naming the ones this framework's graph does not export."""
    formats = tuple(EXPORTS[framework]) if exports is None else tuple(exports)
    wrong = [name for name in formats if name not in EXPORTS[framework]]
    if wrong:
        raise ParameterError(f"exports: a {framework} graph exports {', '.join(EXPORTS[framework])}; got "
                             f"{', '.join(repr(name) for name in wrong)}")
    return formats


def check_merged_out(out: Any, *, overwrite: bool = False, sources: Any = ()) -> Path:
    """Check, before any work, that a merged directory may be written at ``out``: its parent exists
    (only the last level is created), it is not a file, not a source (nor holds one), and holds
    nothing or a merged model (replaced with ``overwrite`` only). Returns ``out`` as a Path.

    Raises
    ------
    OutputError, OutputExistsError
    """
    target = Path(os.fspath(out))
    if not target.parent.is_dir():
        raise OutputError(f"{target}: the folder {target.parent} does not exist; only the last level of --out is "
                          f"created, so create the others first")
    _check_folder(target, overwrite, {f"source {i + 1}": {"path": os.fspath(p)} for i, p in enumerate(sources)})
    return target


def _check_folder(target: Path, overwrite: bool, sources: dict[str, Any]) -> None:
    resolved = os.path.realpath(target)
    for role, source in sources.items():
        path = os.path.realpath(str((source or {}).get("path", "")))
        if path and (path == resolved or path.startswith(resolved + os.sep)):
            raise OutputError(f"{target}: --out is (or holds) the {role} {path}; a merge never writes over "
                              f"its inputs, choose another --out")
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputExistsError(f"{target}: exists and is not a folder; choose another --out")
    if is_merged_directory(target):
        if not overwrite:
            raise OutputExistsError(f"{target}: holds a merged model; pass --overwrite to replace it, or choose "
                                    f"another --out")
        return
    if any(target.iterdir()):
        raise OutputExistsError(f"{target}: a folder that is not empty and holds no merged model; never replaced, "
                                f"choose another --out")


def _share_like(folder: Path, reference: Path) -> None:
    """Give every file under ``folder`` the permissions of ``reference`` (written with the usual umask):
    safetensors and some exporters write 0600, and a merged model a lab shares must be readable."""
    import stat

    mode = stat.S_IMODE(os.stat(reference).st_mode)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def write_merged(model: SlideModel, out: Any, *, exports: tuple[str, ...] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write ``model`` as a merged directory at ``out`` with its exports; returns what was checked.

    Parameters
    ----------
    model : SlideModel
    out : path
        The directory (its parent must exist); an existing merged directory is replaced only with
        ``overwrite``; any other non-empty folder never.
    exports : tuple of str, optional
        Formats of :data:`EXPORTS` for the model's framework (default: all of them).

    Raises
    ------
    OutputExistsError, CheckpointError (an export that does not reload or disagrees), ParameterError
    """
    framework = model.card.framework
    formats = check_exports(framework, exports)
    target = check_merged_out(out, overwrite=overwrite)
    _check_folder(target, overwrite, {f"{role} source": source for role, source in model.card.sources.items()})
    inputs = sample_inputs(model.card)
    expected = model.backend.run(*inputs)
    checks: dict[str, Any] = {}
    with atomic_path(target) as temporary:
        temporary.mkdir()
        weights_file = "merged" + model.backend.weights_suffix
        model.backend.save_weights(str(temporary / weights_file))
        weights = {"file": weights_file, "sha256": file_sha256([str(temporary / weights_file)])}
        others = sorted(p.name for p in temporary.iterdir() if p.name != weights_file)
        if others:  # the TF checkpoint a tf graph writes beside its .weights.h5
            weights["also"] = others
        fresh = graph_class(framework)(model.card.tissue, model.card.cell, model.card.head, seed=12345,
                                       members=model.card.members)
        fresh.load_weights(str(temporary / weights_file))
        checks["weights"] = compare_outputs(expected, fresh.run(*inputs), f"{weights_file} reloaded", tolerance=0.0)
        exported: dict[str, Any] = {}
        for name in formats:
            file = EXPORTS[framework][name]
            path = str(temporary / file)
            try:
                got = model.backend.export(name, path, inputs)
            except (CheckpointError, ParameterError):
                raise
            except Exception as exc:  # exporters and runtimes raise many types; one error naming the export
                raise CheckpointError(f"{file} ({name}): the export failed: {type(exc).__name__}: "
                                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
            worst = compare_outputs(expected, got, f"{file} ({name}) reloaded")
            sha = file_sha256([path]) if os.path.isfile(path) else None
            exported[name] = {"file": file, **({"sha256": sha} if sha else {}), "max_difference": worst,
                              "checked_on": f"{len(inputs[0])} coarse and {len(inputs[1])} fine sample tiles"}
            checks[name] = worst
        card = model.card.replace(weights=weights, exports=exported)
        card.save(temporary / CARD_FILE)
        _share_like(temporary, temporary / CARD_FILE)
    model.card = card
    model.directory = str(target)
    return checks
