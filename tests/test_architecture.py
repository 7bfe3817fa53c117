"""Guard rails on the shape of the code (DESIGN.md "Layout"): they fail on the import, not in review.

- Dependencies point one way: ``workflows -> merge -> models -> tiling -> wsi``.
- No package imports another package's private modules or names (a leading underscore).
- No import cycles between modules, lazy (function-level) imports included.
- Importing a package loads no ML framework (torch, TensorFlow, Keras, JAX).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Packages from the top of the dependency order to the bottom; each may import only those after it.
ORDER = ["workflows", "merge", "models", "tiling", "wsi"]
PRESENT = [name for name in ORDER if (REPO / name).is_dir()]
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["slidescope", *parts])


def source_files() -> list[Path]:
    return sorted(path for name in PRESENT for path in (REPO / name).rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import in a file, wherever it sits."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    return found


def top_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "slidescope" else None


def test_the_packages_are_found():
    assert {"wsi", "tiling", "models", "workflows"} <= set(PRESENT)
    assert len(source_files()) > 20


def test_dependencies_point_one_way():
    wrong = []
    for path in source_files():
        own = top_package(module_name(path))
        allowed = set(ORDER[ORDER.index(own):])
        for line, target, _ in imports_of(path):
            other = top_package(target)
            if other is not None and other not in allowed:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {target} ({own} may import only {sorted(allowed)})")
    assert not wrong, "\n".join(wrong)


def test_no_private_imports_across_packages():
    wrong = []
    for path in source_files():
        own = top_package(module_name(path))
        for line, target, names in imports_of(path):
            other = top_package(target)
            if other is None or other == own:
                continue
            private_module = any(part.startswith("_") and not part.startswith("__") for part in target.split("."))
            private_names = [name for name in names if name.startswith("_")]
            if private_module or private_names:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports private {target} {private_names or ''}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    modules = {module_name(path): path for path in source_files()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, target, names in imports_of(path):
            candidates = [f"{target}.{n}" for n in names] + [target]
            for candidate in candidates:
                if candidate in modules and candidate != name:
                    # A package's __init__ re-exporting its modules is not a cycle with them.
                    if not (path.name == "__init__.py" and candidate.startswith(name + ".")):
                        graph[name].add(candidate)
                    break
    for name in modules:  # importing a submodule runs its package's __init__ first: not an edge back
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package", [f"slidescope.{name}" for name in PRESENT if name in ("wsi", "tiling", "models", "workflows")]
                         + ["slidescope.workflows.cli"])
def test_importing_a_package_loads_no_framework(package):
    code = (f"import sys, {package}\n"
            f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
            "print(','.join(loaded))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"importing {package} loaded {result.stdout.strip()}"
