"""The version of the code behind a generated artefact: a digest of a module's source and of every project module
it imports, directly or through others.

Snakemake reruns a job when its parameters change but does not see the Python a job imports. Where the code *is*
the data's definition (the toy world's generator, the toy models' trainers), a rule passes this digest as a
parameter, so editing that code (say, the shapes' sizes) regenerates what it wrote instead of keeping the old
files.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "workflow_scripts"
ROOT = Path(__file__).resolve().parent.parent  # holds the package folder (found without importing anything)


def _source_of(module: str, root: Path = ROOT) -> Path | None:
    """The file defining a project module (``pkg/mod.py`` or ``pkg/mod/__init__.py``) under ``root``, or None."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, package_of_file: str, root: Path) -> set[str]:
    """Project modules that ``path`` imports (absolute or relative; ``from pkg import mod`` counts ``pkg.mod``
    when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package_of_file.split(".")[: len(package_of_file.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _source_of(f"{base}.{a.name}", root) is not None)
    return found


def module_sources(module: str, root: Path = ROOT) -> list[Path]:
    """Source files of ``module`` and of every project module it reaches by imports, sorted by module name
    (``root``: the folder holding the package)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _source_of(name, root)
        if path is None:
            raise ModuleNotFoundError(f"{name}: no Python source found (imported by the code behind {module})")
        seen[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(_imported(path, package, root) - seen.keys())
    return [seen[name] for name in sorted(seen)]


def sources_sha256(module: str, root: Path = ROOT) -> str:
    """sha256 over the paths and bytes of ``module_sources(module)``: changes when any of them does."""
    digest = hashlib.sha256()
    for path in module_sources(module, root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
