"""What an extraction worker process runs: a path in, the file's document and its facts out.

This module is all a worker imports (with the readers, :data:`extract.READER_MODULES`): not
the catalog, not pymongo, not the CLI. The forkserver the workers fork from imports it once
(:data:`MODULES`), and the lighter it is, the sooner the first worker starts. The process
that writes (:mod:`spine_docs.ingest`) imports it too, for :func:`extract_one` on the
in-process path and for :data:`FACTS`, but never the readers it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson

from .extract import READER_MODULES, ExtractCache, Limits, error_document, extract, extract_encoded

#: what a worker imports, once, in the forkserver
MODULES = (__name__, *READER_MODULES)

#: the fields of a document that its write and its links are made from (:mod:`spine_docs.links`):
#: a worker sends them beside the document's BSON, so that the writing process need not walk
#: the bytes
FACTS = ("_id", "path", "name", "site", "inputs", "dataset", "prod_version", "config",
         "spine_version_key", "status", "error")

#: one file's result: the document (a dict, or BSON bytes from a worker) and its facts
#: (:data:`FACTS`; the document itself when it is a dict)
Extracted = tuple[Any, Mapping[str, Any]]

_cache: ExtractCache | None = None  # set in each worker process by init()


def init() -> None:
    """A worker process's start: its own extraction cache."""
    global _cache
    _cache = ExtractCache(copy=False)  # each document is pickled as soon as it is made


def extract_one(path: str, site: str, limits: Limits, checksum: bool,
                cache: ExtractCache | None = None, raw: bool = False) -> Extracted:
    """One file's document and its facts; with ``raw``, the document as BSON bytes (what a
    worker process sends back: the BSON that fit() made anyway crosses between processes
    faster than a nested dict, the catalog writes the nested parts' bytes as they are, and
    the facts beside it spare the caller a walk through the bytes)."""
    try:
        if raw:
            doc, encoded = extract_encoded(path, site=site, limits=limits, checksum=checksum,
                                           cache=cache or _cache)
            return encoded, {k: doc.get(k) for k in FACTS}
        doc = extract(path, site=site, limits=limits, checksum=checksum, cache=cache or _cache)
    except Exception as exc:  # extract() handles file problems; this is a last resort
        doc = error_document(site, path, f"extractor failed: {type(exc).__name__}: {exc}"[:500])
        if raw:
            return bson.encode(doc), {k: doc.get(k) for k in FACTS}
    return doc, doc
