"""What every kind of catalog shares: the one error and the default database name."""

from __future__ import annotations

#: the database name when a URL or directory does not give one
DEFAULT_DB = "spine_docs"


class StoreError(Exception):
    """The catalog cannot be opened, locked, loaded or saved (the message is one line)."""
