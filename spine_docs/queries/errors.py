"""The two errors of the query layer: a parameter that cannot be used (:class:`QueryError`, a
``ValueError``) and a query stopped at its time limit (:class:`QueryTimeout`)."""

from __future__ import annotations


class QueryError(ValueError):
    """A query parameter that cannot be used (bad regex, unknown field, invalid cursor...)."""


class QueryTimeout(RuntimeError):
    """The server stopped the query at its time limit (``max_time_ms``)."""

    def __init__(self, max_time_ms: int | None):
        self.max_time_ms = max_time_ms
        limit = f"{max_time_ms} ms" if max_time_ms else "its time limit"
        super().__init__(f"the query took longer than {limit}; narrow the filter or raise the limit")
