"""Where the shipped files live: schema.json, migrations/ and app/.

In a source checkout they are the top-level files of the repository; in an installed wheel
they are shipped as ``spine_docs/data/``. Nothing else in the package needs to know which.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_CHECKOUT = _PKG.parent
_WHEEL = _PKG / "data"


def _root() -> Path:
    if (_CHECKOUT / "schema.json").is_file() and (_CHECKOUT / "migrations").is_dir():
        return _CHECKOUT
    return _WHEEL


def schema_file() -> Path:
    return _root() / "schema.json"


def migrations_dir() -> Path:
    return _root() / "migrations"


def app_dir() -> Path:
    return _root() / "app"
