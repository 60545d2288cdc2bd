"""What every kind of catalog shares: the errors and the default database name."""

from __future__ import annotations

#: the database name when a URL or directory does not give one
DEFAULT_DB = "spine_docs"


class StoreError(Exception):
    """The catalog cannot be opened, locked, loaded or saved (the message is one line).

    ``committed`` is True only for a save that failed after its commit point: the catalog
    then holds the new content once the save is completed (by the next process that opens
    it); in every other case a failed save left the catalog as it was."""

    committed: bool = False


class NoCatalog(StoreError):
    """``connect(path, create=False)`` found no embedded catalog in that directory."""
