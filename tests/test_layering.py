"""The store package's layering: the engine imports nothing from the rest of spine_docs, and
nothing outside spine_docs/store reaches into the engine's modules (only its public names).

Checked on the source (every import statement, function-level ones included, relative
imports resolved) and, for the engine, at run time in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from spine_docs.store import engine

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spine_docs"
ENGINE = "spine_docs.store.engine"


def module_name(path: Path) -> str:
    """``spine_docs/store/engine/rawbson.py`` -> ``spine_docs.store.engine.rawbson``; files
    outside the package (app/, migrations/) get a name of their own."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(name: str, source: str, is_package: bool = False) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in ``source``, the module
    ``name``'s; relative imports resolved."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def engine_violations(name: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of spine_docs outside the engine by the engine module ``name``."""
    bad = []
    for target, names in imports(name, source, is_package):
        if target.split(".")[0] == "spine_docs" and not (target + ".").startswith(ENGINE + "."):
            bad.append(f"{name} imports {target} {names or ''}".rstrip())
    return bad


def outside_violations(name: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of the engine's modules (or of names it does not export) by a module outside
    spine_docs/store."""
    bad = []
    for target, names in imports(name, source, is_package):
        if target.startswith(ENGINE + "."):
            bad.append(f"{name} imports the engine's module {target}")
        elif target == ENGINE:
            bad += [f"{name} imports {target}.{n}, not in its __all__"
                    for n in names if n not in engine.__all__]
        elif target == "spine_docs.store" and "engine" in names:
            bad.append(f"{name} imports the engine package itself (use its public names)")
    return bad


def sources(*tops: str):
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path, module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py"


def test_the_engine_imports_nothing_else_from_spine_docs():
    scanned = [(n, engine_violations(n, s, p)) for path, n, s, p in sources("spine_docs/store/engine")]
    assert len(scanned) >= 10  # the scan does see the engine's modules
    assert [v for _n, vs in scanned for v in vs] == []


def test_nothing_outside_store_reaches_into_the_engine():
    bad = []
    scanned = 0
    for path, name, source, is_package in sources("spine_docs", "app", "migrations"):
        if (PACKAGE / "store") in path.parents:
            continue
        scanned += 1
        bad += outside_violations(name, source, is_package)
    assert scanned >= 20
    assert bad == []


def test_the_scan_sees_violations():
    assert engine_violations(f"{ENGINE}.rawbson", "from .. import dumpfmt") == \
        [f"{ENGINE}.rawbson imports spine_docs.store ['dumpfmt']"]
    assert engine_violations(f"{ENGINE}.sorting", "def f():\n    from spine_docs import ingest\n")
    assert engine_violations(f"{ENGINE}.sorting", "import spine_docs.store.embedded")
    assert engine_violations(ENGINE, "from . import rawbson\nfrom .keys import norm", True) == []
    assert outside_violations("spine_docs.dumpfmt", "from .store.engine import raw_documents") == []
    assert outside_violations("spine_docs.dumpfmt", "from .store.engine.rawbson import splice")
    assert outside_violations("spine_docs.dumpfmt", "from .store.engine import _Catalog")
    assert outside_violations("spine_docs.ingest", "from .store import engine")
    assert outside_violations("app.explorer", "import spine_docs.store.engine.collection")


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_the_engine_loads_no_other_spine_docs_module():
    # importing a subpackage runs its parent's __init__ first (spine_docs.store, which loads
    # the embedded catalog and dumpfmt); an empty stand-in parent shows what the engine
    # itself pulls in
    code = (
        "import sys, types, spine_docs\n"
        "parent = types.ModuleType('spine_docs.store')\n"
        "parent.__path__ = [spine_docs.__path__[0] + '/store']\n"
        "sys.modules['spine_docs.store'] = parent\n"
        "import spine_docs.store.engine\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('spine_docs'))))\n")
    loaded = _fresh(code).split()
    assert "spine_docs.store.engine.collection" in loaded  # the engine was imported
    assert [m for m in loaded if not m.startswith(ENGINE)] == ["spine_docs", "spine_docs.store"]


@pytest.mark.parametrize("first", ["spine_docs.dumpfmt", "spine_docs.store", ENGINE])
def test_dumpfmt_and_store_import_in_either_order(first):
    # dumpfmt uses the engine's raw_documents; the embedded catalog uses dumpfmt
    assert _fresh(f"import {first}\nimport spine_docs.store, spine_docs.dumpfmt\n"
                  "print(spine_docs.dumpfmt.raw_documents is spine_docs.store.engine.raw_documents)") \
        == "True"
