"""The engine's Cursor: streams ``find()`` results (mongomock's copied its whole result
list on every ``next()``)."""

from __future__ import annotations

from collections.abc import Iterator

from mongomock import collection as mm_collection
from mongomock import helpers as mm_helpers
from mongomock.not_implemented import raise_for_feature as _raise_not_implemented
from pymongo.errors import InvalidOperation


class Cursor(mm_collection.Cursor):
    """A cursor that streams (mongomock's copied its whole result list on every next())."""

    _stream: Iterator | None = None
    _exhausted = False

    def _make_stream(self) -> Iterator[dict]:
        limit = abs(self._limit) if self._limit else 0
        it = self.collection._find_stream(self._spec, self._sort, self._projection,
                                          self._skip or 0, limit)
        if self.collection.codec_options.tz_aware:
            it = map(mm_helpers.make_datetime_timezone_aware_in_document, it)
        return it

    def __next__(self):
        if self._exhausted:
            raise StopIteration
        if self._stream is None:
            self._stream = self._make_stream()
        try:
            doc = next(self._stream)
        except StopIteration:
            self._exhausted = True
            self._stream = None
            raise
        self._emitted += 1
        return doc

    next = __next__

    def _check_not_started(self) -> None:
        if self._stream is not None or self._exhausted:
            raise InvalidOperation("cannot set options after executing query")

    def rewind(self):
        self._emitted = 0
        self._stream = None
        self._exhausted = False
        return self

    def clone(self):
        return Cursor(self.collection, self._spec, self._sort, self._projection, self._skip,
                       self._limit)

    def close(self):
        self._stream = None
        self._exhausted = True

    def sort(self, key_or_list, direction=None):
        self._check_not_started()
        return super().sort(key_or_list, direction)

    def skip(self, count):
        self._check_not_started()
        return super().skip(count)

    def limit(self, count):
        self._check_not_started()
        return super().limit(count)

    def __getitem__(self, index):
        if isinstance(index, int) and not isinstance(index, bool):
            if index < 0:
                raise IndexError("Cursor instances do not support negative indices")
            for i, doc in enumerate(self._make_stream()):
                if i == index:
                    return doc
            raise IndexError("no such item for Cursor instance")
        return super().__getitem__(index)

    @property
    def alive(self):
        return not self._exhausted

    def distinct(self, key, session=None):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        return self.collection.distinct(key, self._spec)

    def to_list(self, length=None):
        out = []
        for doc in self:
            out.append(doc)
            if length and len(out) >= length:
                break
        return out

