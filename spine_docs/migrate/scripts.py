"""Migration files: discover, load, checksum, scaffold (the "script" layer, as in Alembic).

A migration is ``<migrations dir>/NNNN_<slug>.py``; ``NNNN`` is the schema version it brings
the database to. The module defines

* ``description: str`` - one line shown by ``status``, ``plan`` and ``history``;
* ``up(db)`` - the change; must be idempotent (re-running after an interruption finishes the
  job) and work in batches when it touches documents;
* ``down(db)`` (optional) - undo it; absent means the step cannot be undone;
* ``plan(db) -> list[dict]`` and ``plan_down(db) -> list[dict]`` (optional) - the commands
  ``up``/``down`` would send, computed **without writing** (``migrate plan`` prints them).

The checksum is the SHA-256 of the file with line endings normalised, so a checkout with
CRLF line endings is not reported as changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import resources

FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<slug>[a-z0-9][a-z0-9_]*)\.py$")


class MigrationScriptError(Exception):
    """A migrations directory or a migration file is not usable."""


@dataclass
class Migration:
    """One migration file. ``module`` is loaded on first use of :meth:`load`."""

    version: int
    slug: str
    path: Path
    checksum: str
    description: str = ""
    _module: ModuleType | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> ModuleType:
        if self._module is None:
            self._module = load_module(self.path)
        return self._module

    @property
    def reversible(self) -> bool:
        return callable(getattr(self.load(), "down", None))

    def up(self, db) -> Any:
        return self.load().up(db)

    def down(self, db) -> Any:
        mod = self.load()
        if not callable(getattr(mod, "down", None)):
            raise MigrationScriptError(f"{self.name} cannot be undone (it has no down())")
        return mod.down(db)

    def plan(self, db, direction: str = "up") -> list[dict] | None:
        """The commands the step would send, or None when the file declares no plan."""
        fn = getattr(self.load(), "plan" if direction == "up" else "plan_down", None)
        return list(fn(db)) if callable(fn) else None


def file_checksum(path: str | Path) -> str:
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def load_module(path: str | Path) -> ModuleType:
    """Import a migration file under a private module name (never cached in sys.modules
    under its file name, so two directories with the same file names do not clash)."""
    path = Path(path)
    name = f"spine_docs_migration_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MigrationScriptError(f"cannot load migration {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise MigrationScriptError(f"cannot import migration {path.name}: {exc}") from exc
    if not callable(getattr(mod, "up", None)):
        raise MigrationScriptError(f"migration {path.name} has no up(db)")
    if not isinstance(getattr(mod, "description", None), str):
        raise MigrationScriptError(f"migration {path.name} has no description string")
    return mod


def discover(directory: str | Path | None = None, *, load: bool = True) -> list[Migration]:
    """All ``NNNN_slug.py`` files of ``directory`` (the shipped ``migrations/`` by default),
    sorted by version. Raises :class:`MigrationScriptError` on duplicate versions, version 0,
    or gaps (versions must run 1, 2, ... N)."""
    d = Path(directory) if directory is not None else resources.migrations_dir()
    if not d.is_dir():
        raise MigrationScriptError(f"migrations directory not found: {d}")
    found: dict[int, Migration] = {}
    for p in sorted(d.iterdir()):
        m = FILE_RE.match(p.name)
        if not m or not p.is_file():
            continue
        v = int(m.group("version"))
        if v in found:
            raise MigrationScriptError(f"two migrations with version {v:04d}: {found[v].path.name}, {p.name}")
        found[v] = Migration(version=v, slug=m.group("slug"), path=p, checksum=file_checksum(p))
    versions = sorted(found)
    if versions and versions != list(range(1, versions[-1] + 1)):
        raise MigrationScriptError(f"migration versions must run 1..N without gaps, found {versions}")
    out = [found[v] for v in versions]
    if load:
        for mig in out:
            mig.description = mig.load().description.strip().splitlines()[0] if mig.load().description.strip() else ""
    return out


def head(migrations: list[Migration]) -> int:
    return migrations[-1].version if migrations else 0


TEMPLATE = '''"""{title}

Version {version:04d}. Write up(db) so that running it twice, or again after an interruption,
finishes the job without harm (filter on what is not done yet; work in batches).
Structural changes: list them as MongoDB commands and apply them with ops.ensure, so that
`spine-docs migrate plan` can show them without writing.
Rewriting `files` documents? Apply the same change to the versions kept in `file_versions`
(ops.transform_files does both), or say here why the history need not follow: otherwise
`--as-of` and `diff PATH@N` rebuild old documents of the old shape (see ops' docstring).
"""

from spine_docs.migrate import ops

description = {description!r}

#: createIndexes / collMod / create / dropIndexes commands this step sends (plan shows them).
COMMANDS: list[dict] = []


def plan(db):
    return ops.pending(db, COMMANDS)


def up(db):
    ops.ensure(db, COMMANDS)


def down(db):
    # Undo up(), or delete this function if the step cannot be undone.
    ops.ensure(db, ops.inverse(COMMANDS))
'''


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    if not slug:
        raise MigrationScriptError(f"cannot make a file name from {text!r}")
    return slug[:60]


def new_migration(slug: str, directory: str | Path | None = None, *,
                  schema_file: str | Path | None = None) -> tuple[Path, int]:
    """Scaffold the next migration file ``NNNN_<slug>.py``; when ``schema_file`` is given,
    its ``"schema_version"`` is bumped to the new version (text edit, formatting kept).
    Returns (path, version)."""
    d = Path(directory) if directory is not None else resources.migrations_dir()
    d.mkdir(parents=True, exist_ok=True)
    version = head(discover(d, load=False)) + 1
    s = slugify(slug)
    path = d / f"{version:04d}_{s}.py"
    if path.exists():
        raise MigrationScriptError(f"{path} already exists")
    path.write_text(TEMPLATE.format(title=slug.strip(), version=version, description=slug.strip()),
                    encoding="utf-8")
    if schema_file is not None:
        sf = Path(schema_file)
        text = sf.read_text(encoding="utf-8")
        new, n = re.subn(r'("schema_version"\s*:\s*)\d+', lambda m: f"{m.group(1)}{version}", text, count=1)
        if n != 1:
            raise MigrationScriptError(f"no schema_version in {sf}")
        sf.write_text(new, encoding="utf-8")
    return path, version
