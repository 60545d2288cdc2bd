"""One settings object for every entry point: flags > ``SPINE_DOCS_*`` environment > defaults.

The CLI builds it with :meth:`Settings.load` passing the flags it received; the app and the
tests do the same. Nothing else reads the environment.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field, ValidationError, field_validator

ENV_PREFIX = "SPINE_DOCS_"

# Regexes tried, in order, against the absolute path of a file when neither root attributes,
# SPINE's /info, nor the sidecars give a value. Named groups fill promoted fields: any of
# model, dataset, run, subrun, detector, config, prod_version, prod_date, spine_version.
DEFAULT_PATH_PATTERNS: list[str] = [
    # spine-prod: runs/<YYYYmmdd_HHMMSS>_spine_<detector>_<config>/tasks/chunk_NNN/task_K/output/
    r"/runs/(?P<prod_date>\d{8}_\d{6})_spine_(?P<detector>[A-Za-z0-9-]+)_(?P<config>[^/]+)/tasks/",
    # common hand-made layouts: .../run_000123/... or ..._run123_subrun4...
    r"[/_-]run[_-]?(?P<run>\d+)(?:[/_-]subrun[_-]?(?P<subrun>\d+))?",
    r"/v(?P<spine_version>\d+\.\d+(?:\.\d+)?)/",
]


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names where it came from."""


def _default_site() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def _default_home() -> Path:
    return Path(".spine_docs")


class Settings(BaseModel):
    """Everything configurable. Field ``x`` is read from ``SPINE_DOCS_X``."""

    home: Path = Field(default_factory=_default_home, description="state folder (catalog, backups)")
    db: str | None = Field(None, description="mongodb://, mongodb+srv://, mongomock:// or a directory")
    site: str = Field(default_factory=_default_site)
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    batch_size: int = 500
    checksum: bool = False
    # history: previous documents kept per file in file_versions (0: none; see history.py)
    keep_versions: int = Field(10, ge=0)
    path_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PATH_PATTERNS))
    # extraction bounds
    max_array_items: int = 1000
    max_string_bytes: int = 65536
    max_structure_items: int = 256
    max_structure_depth: int = 4
    # queries
    query_timeout_ms: int = 5000
    connect_timeout_ms: int = 5000
    # long commands (migrate, inject, roles, users) wait this long for a primary: an
    # election; inject sends a batch the database did not take again for this long
    failover_timeout_s: float = Field(30.0, gt=0)
    # the first pause between two attempts of a write during a failover (doubled up to 2 s)
    retry_backoff_s: float = Field(0.1, gt=0)
    # credentials apart from the URL: the user name, and a file holding the password
    user: str | None = None
    password_file: Path | None = None
    schema_file: Path | None = None
    migrations_dir: Path | None = None

    @field_validator("path_patterns", mode="before")
    @classmethod
    def _patterns(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            return json.loads(v) if v.startswith("[") else [v]
        return v

    @property
    def db_url(self) -> str:
        """The catalog to use: the given URL, else the embedded catalog under ``home``."""
        return self.db or str(self.home / "catalog")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: Any) -> "Settings":
        """Flags (non-None values) override ``SPINE_DOCS_*`` variables, which override defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw not in (None, ""):
                values[name] = raw
                origin[name] = f"{ENV_PREFIX}{name.upper()}={raw!r}"
        for k, v in flags.items():
            if v is not None:
                values[k] = v
                origin[k] = f"--{k.replace('_', '-')} {v!r}"
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first.get("loc") else ""
            where = origin.get(name, name)
            raise SettingsError(f"{where}: {first['msg'][0].lower()}{first['msg'][1:]}") from None
        except (ValueError, TypeError) as exc:  # a path-patterns JSON that does not parse
            raise SettingsError(f"invalid setting: {exc}") from None
