"""The persisted column cache of an embedded catalog's collection (a cache file, never data).

The engine's column cache (:mod:`spine_docs.store.engine.columns`) costs one decode of every
document when a collection state is first read whole (~0.8 s of CPU at 50,000 files); the
catalog keeps it next to the collection's files so that the next process opening the same
generation restores it (~0.1 s) instead::

    <dir>/spine_docs/.columns-<coll>.bson           the columns of <coll>.bson's content
    <dir>/spine_docs/.columns-<coll>.bson.<tag>.part  a write in progress (removed by the
                                                   next writer's clean-up when left behind)

The file is ``MAGIC``, a 4-byte little-endian header length, a JSON header and the engine's
payload (:func:`engine.columns.dump`). The header ties it to one content of the collection:
the SHA-256 and document count of the ``.bson`` file it was made from (the ones the loader
has just computed from the bytes it loaded), the payload's size and CRC-32, the pymongo
version that decoded it and the engine's payload format. Any mismatch, a short or corrupt
file, or a payload the engine finds inconsistent, and it is ignored: the columns are built
as before (and the file rewritten). So a file left by another generation, by a writer that
crashed, or next to a ``.bson`` file changed by a version of spine-docs that did not write
it, can never give an answer; it only costs the build it failed to save.

Who writes it: a process that builds the columns of a state it loaded or saved unchanged,
when it asked for it (``store.keep_columns(db)``: the explorer; other reads write nothing),
and a save (``writing()``) when the collection's columns are
current, or when every write since the state the old file describes changed only fields
that are no columns, in place (a re-scan's "seen again": ``ingest.last_seen``) - then the
old payload is copied under the new header without decoding anything, less the raw
columns (small embedded documents) of the fields changed, if any (the header's
``opaque``: the fields the payload holds nothing of); when documents were also inserted
(an inject of new files), the old payload is restored and merged with a build of only the
inserted documents (``engine.columns_extended``: the columns a build of all of them
makes). Otherwise (a replacement, a delete) a save removes the file. Writes are best effort (a read-only catalog keeps none) and atomic
(temporary file, then rename); a backup, ``mongorestore`` and ``migrate`` never read it
(dot-files are no collections).
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any

import pymongo

from .. import dumpfmt
from . import engine

MAGIC = b"spine-docs columns\n"
PREFIX = ".columns-"
_LEN = struct.Struct("<I")


def path_for(db_dir: Path, name: str) -> Path:
    """The column file of collection ``name`` in ``db_dir``."""
    return db_dir / (PREFIX + dumpfmt.collection_paths(db_dir, name)[0].name)


class ColumnsFile:
    """The column file of collection ``name`` as it must be for the state ``version`` of its
    store, whose ``.bson`` file has ``info["sha256"]`` and ``info["count"]`` (what the engine
    calls as ``store.columns_file``)."""

    def __init__(self, db_dir: Path, name: str, info: dict, version: int,
                 keep: Any = lambda: False):
        self.path = path_for(db_dir, name)
        self._keep = keep
        self.name = name
        self.version = version
        self.tie = {"collection": name, "sha256": info.get("sha256"), "count": info.get("count"),
                    "pymongo": pymongo.version, "format": engine.COLUMNS_FORMAT}

    def read_file(self) -> tuple[dict, Any] | None:
        """(header, payload) when the file is there, whole and made for this state."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        try:
            if not data.startswith(MAGIC):
                return None
            at = len(MAGIC)
            (size,) = _LEN.unpack_from(data, at)
            header = json.loads(data[at + 4:at + 4 + size])
            payload = memoryview(data)[at + 4 + size:]  # no copy
            if not isinstance(header, dict) or any(header.get(k) != v for k, v in self.tie.items()):
                return None
            if header.get("payload_bytes") != len(payload) \
                    or header.get("payload_crc32") != zlib.crc32(payload):
                return None
            if not isinstance(header.get("opaque"), list):
                return None
            return header, payload
        except (ValueError, struct.error, UnicodeDecodeError):
            return None

    @property
    def keep_builds(self) -> bool:
        """Whether the engine should hand a build of this state to :meth:`write`."""
        return bool(self._keep())

    def read(self) -> Any:
        got = self.read_file()
        return None if got is None else got[1]

    def write(self, payload: Any, opaque: list | None = None, crc32: int | None = None) -> bool:
        """Write the file for this state (best effort: False when it could not);
        ``opaque`` (the fields whose values the payload does not hold) and ``crc32`` of
        ``payload`` when known."""
        if opaque is None:
            try:
                opaque = list(engine.raw_fields(bytes(payload), ["opaque"])["opaque"])
            except Exception:  # noqa: BLE001 - not a payload: keep no file
                return False
        header = json.dumps({**self.tie, "payload_bytes": len(payload),
                             "payload_crc32": zlib.crc32(payload) if crc32 is None else crc32,
                             "opaque": opaque}).encode()
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}-{secrets.token_hex(3)}.part")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC + _LEN.pack(len(header)) + header)
                f.write(payload)
            os.replace(tmp, self.path)
            return True
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
            return False

    def remove(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


def carry_over(old: ColumnsFile | None, new: ColumnsFile, st: Any) -> bool:
    """At a save of store ``st`` (its state is ``new``'s): write ``new``'s file from the
    current columns, or from the columns of the state the writes started from (``old``'s
    payload, else the columns this process built of that state, if it did) when every write
    since only changed non-column fields in place, or from those and the documents inserted
    since when the other writes were such; else remove the file. True when it wrote one."""
    payload = engine.columns_payload(st, new.version)
    if payload is not None:
        return new.write(payload)
    got = None
    if st.drift is not None:
        if old is not None and st.drift_base == old.version:
            got = old.read_file()
        if got is None:  # no file of that state: the columns built of it in memory, if any
            base = engine.columns_of_base(st)
            if base is not None:
                got = ({"count": len(st) - st.appended,
                        "opaque": list(engine.raw_fields(base, ["opaque"])["opaque"])}, base)
    if got is not None and st.appended:  # inserts: only they are decoded
        payload = engine.columns_extended(st, bytes(got[1]), got[0]["count"])
        if payload is not None:
            return new.write(payload)
    elif got is not None and st.drift <= set(got[0]["opaque"]):
        return new.write(got[1], got[0]["opaque"], got[0].get("payload_crc32"))
    elif got is not None:  # in place to raw columns too (embedded documents): drop those
        cut = engine.columns_without_raw(bytes(got[1]), st.drift - set(got[0]["opaque"]))
        if cut is not None and st.drift <= set(cut[1]):
            return new.write(cut[0], cut[1])
    new.remove()
    return False


def any_present(db_dir: Path) -> list[Path]:
    """The column files in ``db_dir``."""
    try:
        return [p for p in db_dir.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(".bson")]
    except OSError:
        return []
