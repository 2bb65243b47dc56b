"""The packages meet where the layout says: `api/` and `trainer/` only in `models/` and `streams/`.

The import graph of the repository's own packages is read statically (`ast`, every import
statement, lazy ones inside functions too), and followed transitively: `api/` must not reach
`trainer/` through any chain of first-party modules, `models/` reaches neither `api/` nor
`trainer/`, and `trainer/` does not reach `api/`. A failure names each violating chain.
A second check imports the API and every module of `models/` for real and looks at
`sys.modules`: no training library (`datasets`, `trl`) may be loaded by them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("ctrlgpt", "streams", "producers", "consumers", "models", "trainer", "api", "deploy")
TRAINING_LIBRARIES = ("datasets", "trl")

# (importer package, package it must never reach)
FORBIDDEN = [("api", "trainer"), ("models", "api"), ("models", "trainer"), ("trainer", "api")]


def modules_under(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the given top-level packages under `root`."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _with_parents(module: str) -> list[str]:
    """Importing `a.b.c` runs `a` and `a.b` first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_by(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """First-party modules that `module` (at `path`) imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {parent for name in names for parent in _with_parents(name) if parent in known and parent != module}


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    known = modules_under(root, packages)
    return {module: imported_by(module, path, known) for module, path in known.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_chains(graph: Mapping[str, set[str]], importer: str, forbidden: str) -> list[list[str]]:
    """For each module of `importer` that reaches `forbidden`, the shortest chain of imports that does
    (ending at the most specific module it imports there: `trainer.hf` rather than the package `trainer`)."""
    chains = []
    for start in sorted(m for m in graph if _in(m, importer)):
        previous: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            module = queue.popleft()
            crossing = sorted((m for m in graph.get(module, ()) if _in(m, forbidden)), key=len)
            if crossing:
                chain = [crossing[-1], module]
                while (before := previous[chain[-1]]) is not None:
                    chain.append(before)
                chains.append(chain[::-1])
                break
            for imported in sorted(graph.get(module, ())):
                if imported not in previous:
                    previous[imported] = module
                    queue.append(imported)
    return chains


def violations(graph: Mapping[str, set[str]], rules: Iterable[tuple[str, str]]) -> list[str]:
    return [
        f"{importer} must not import {forbidden}: " + " -> ".join(chain)
        for importer, forbidden in rules
        for chain in forbidden_chains(graph, importer, forbidden)
    ]


def test_api_and_trainer_meet_only_in_models_and_streams():
    found = violations(import_graph(REPO, FIRST_PARTY), FORBIDDEN)
    assert not found, "imports across the boundary:\n" + "\n".join(found)


def test_the_api_and_every_models_module_load_no_training_library():
    imported = ["api.main", *modules_under(REPO, ["models"])]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {imported!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_LIBRARIES!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    """api -> models -> trainer only through a chain, and a relative, a lazy and a `from pkg import module` import."""
    _write(
        tmp_path,
        {
            "api/__init__.py": "",
            "api/routes/__init__.py": "",
            "api/routes/admin.py": "from ..loader import load\n",
            "api/loader.py": "def load():\n    from models import registry\n",
            "models/__init__.py": "",
            "models/registry.py": "import json\nfrom trainer import hf\n",
            "trainer/__init__.py": "",
            "trainer/hf.py": "import datasets\n",
            "streams/__init__.py": "",
            "streams/bus.py": "import api.loader\n",
        },
    )
    return tmp_path


def test_the_checker_follows_relative_lazy_and_module_imports_transitively(tiny_tree):
    graph = import_graph(tiny_tree, ("api", "models", "trainer", "streams"))
    assert graph["api.routes.admin"] == {"api", "api.loader"}
    assert graph["api.loader"] == {"models", "models.registry"}
    assert graph["models.registry"] == {"trainer", "trainer.hf"}
    assert forbidden_chains(graph, "api", "trainer") == [
        ["api.loader", "models.registry", "trainer.hf"],
        ["api.routes.admin", "api.loader", "models.registry", "trainer.hf"],
    ]


def test_the_checker_fails_on_a_violation_and_names_its_chain(tiny_tree):
    found = violations(import_graph(tiny_tree, ("api", "models", "trainer", "streams")), FORBIDDEN)
    assert "api must not import trainer: api.loader -> models.registry -> trainer.hf" in found
    assert "models must not import trainer: models.registry -> trainer.hf" in found
    (tiny_tree / "models" / "registry.py").write_text("import json\n")
    assert violations(import_graph(tiny_tree, ("api", "models", "trainer", "streams")), FORBIDDEN) == []
