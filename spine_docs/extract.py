"""One HDF5 file -> one catalog document (see docs/design.md and README "Document reference").

:func:`extract` never raises for a problem with the file itself: a file that cannot be read
gives a document with ``status: "error"`` and the reason, so the caller can record it.
It reads the file but touches no database, so it runs in worker processes.

What reads and converts (:mod:`convert`, :mod:`spine`, and h5py, numpy and yaml through
them) is imported by the functions that use it, on first use: the identity and stat helpers
here serve ``inject``'s main process too, which reads no file and need not pay for those
imports (a process that will extract imports :data:`READER_MODULES` ahead).

``python -m spine_docs.extract FILE [FILE...]`` prints the documents as JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat as stat_mod
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import bson

#: the modules extract() imports on first use (pool workers get them preloaded)
READER_MODULES = (f"{__package__}.convert", f"{__package__}.spine")
convert: Any = None  # these two modules, once _import_readers() has run
spine: Any = None


def _import_readers() -> None:
    """Bind :mod:`convert` and :mod:`spine` in this module, the first time. Every function
    that uses them calls this first (a check of one global once they are there: an import
    statement per call would cost more than the rest of a cache hit)."""
    global convert, spine
    if spine is None:
        from . import convert as _convert, spine as _spine
        convert, spine = _convert, _spine

#: "2": named datatypes are listed as kind "datatype" (version 1 listed them as a group,
#: then as unreadable); nothing else in a document changed.
EXTRACTOR_VERSION = "2"

#: Promoted fields: always present in a document (None when unknown).
PROMOTED_STR = ("spine_version", "prod_version", "model", "dataset", "detector", "config")
PROMOTED_INT = ("run", "run_max", "subrun", "subrun_max", "event_min", "event_max", "num_events")
PROMOTED = PROMOTED_STR + PROMOTED_INT

#: Every ``status`` a document can have (schema.json's enum is the same): ``ok``, ``incomplete``
#: (read, but SPINE had not finished writing the file) or ``error`` (unreadable: see ``error``),
#: set by ``inject``; ``missing``, ``changed`` or ``corrupt``, set by ``verify``.
STATUSES = ("ok", "incomplete", "error", "missing", "changed", "corrupt")
#: the verdicts of `spine-docs verify` (spine_docs.verify): a file no longer as it was indexed
LIFECYCLE_STATUSES = ("missing", "changed", "corrupt")

#: Root attribute names (lower-cased) that fill a promoted field, in order of preference.
ATTR_ALIASES: dict[str, tuple[str, ...]] = {
    "spine_version": ("spine_version", "spine.version", "version"),
    "prod_version": ("prod_version", "production_version", "production.version"),
    "model": ("model", "model_name", "model.name"),
    "dataset": ("dataset", "dataset_name", "dataset.name"),
    "detector": ("detector", "detector_name"),
    "config": ("config", "config_name", "cfg_name"),
    "run": ("run", "run_number", "runs"),
    "subrun": ("subrun", "subrun_number", "subruns"),
    "event_min": ("event_min", "first_event"),
    "event_max": ("event_max", "last_event"),
    "num_events": ("num_events", "n_events", "nevents", "event_count"),
}

#: A document must stay far below MongoDB's 16 MB limit whatever the file holds.
MAX_DOC_BYTES = 4 * 1024 * 1024
MAX_INPUTS = 1000


@dataclass(frozen=True)
class Limits:
    """Bounds on what one document may hold (from Settings)."""

    max_array_items: int = 1000
    max_string_bytes: int = 65536
    max_structure_items: int = 256
    max_structure_depth: int = 4
    path_patterns: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        return cls(
            max_array_items=settings.max_array_items,
            max_string_bytes=settings.max_string_bytes,
            max_structure_items=settings.max_structure_items,
            max_structure_depth=settings.max_structure_depth,
            path_patterns=tuple(settings.path_patterns),
        )


class ExtractCache:
    """What :func:`extract` may reuse from one file to the next within one process.

    Files of one production share their ``job_metadata.json`` and almost all of their
    configuration (only the input file under ``io`` changes from job to job), so the job
    file is read and converted once per production and each ``cfg`` entry (top-level, and
    inside those whose value is a block mapping) is parsed and converted once per distinct
    text (see :func:`spine.split_cfg`), in a bounded LRU; the result is exactly that of
    parsing the whole text. Documents never share objects with the cache: what comes out
    of it is copied, unless ``copy`` is False, for a caller that serialises each document
    right away (the ingest workers pickle it to the main process) and never changes it.
    """

    def __init__(self, max_cfg_entries: int = 256, max_entry_chars: int = 64 * 1024,
                 copy: bool = True):
        self.jobs: dict[str, Any] = {}            # spine.read_sidecars' job_cache
        self.job_docs: dict[str, Any] = {}        # job path -> converted job document
        self.cfg_entries: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self.max_cfg_entries = max_cfg_entries
        self.max_entry_chars = max_entry_chars
        self.copy = _copy_tree if copy else _same

    def cfg_entry(self, text: str, depth: int = 0) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(plain, converted)`` one-key dicts of one ``cfg`` entry that sits ``depth``
        mappings deep, None when the entry does not stand alone (the caller then parses the
        text it came from whole). An entry seen for the first time whose value is a block
        mapping is assembled from its own entries (:func:`spine.split_cfg_entry`), so only
        the lines that changed are parsed again."""
        key = (text, depth)
        hit = self.cfg_entries.get(key, _MISSING)
        if hit is not _MISSING:
            self.cfg_entries.move_to_end(key)
            return hit
        _import_readers()
        hit = None
        # assembling is exact while the entries inside sit no deeper than where
        # convert cuts nesting; deeper down, the entry is converted in one piece
        nested = spine.split_cfg_entry(text) if depth + 1 <= convert.MAX_DEPTH else None
        if nested is not None:
            name, parts = nested
            inner = self.cfg_entries_merged(parts, depth + 1)
            if inner is not None:
                hit = ({name: inner[0]}, {convert.escape_key(name): inner[1]})
        if hit is None:
            parsed = spine.parse_cfg_entry(text, depth=depth)
            if parsed is not None:
                hit = (parsed, convert.safe_document(parsed, depth=depth))
        if len(text) <= self.max_entry_chars:
            self.cfg_entries[key] = hit
            if len(self.cfg_entries) > self.max_cfg_entries:
                self.cfg_entries.popitem(last=False)
        return hit

    def cfg_entries_merged(self, parts: list[str], depth: int = 0
                           ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(plain, converted)`` of the mapping made of ``parts`` (entries at ``depth``),
        None when one of them does not stand alone."""
        plain: dict[str, Any] = {}
        converted: dict[str, Any] = {}
        for part in parts:
            hit = self.cfg_entry(part, depth)
            if hit is None:
                return None
            plain.update(hit[0])
            converted.update(hit[1])
        return plain, converted


_MISSING = object()


def _same(value: Any) -> Any:
    return value


def _copy_tree(value: Any) -> Any:
    """A copy of a converted document's containers (its leaves are immutable)."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def normalise_path(path: str | os.PathLike[str]) -> str:
    """Absolute, normalised path (symbolic links are kept: sites address files through them)."""
    path = os.fspath(path)
    if os.path.isabs(path):  # what abspath would do to it, minus a second normpath
        return os.path.normpath(path)
    return os.path.normpath(os.path.abspath(path))


def doc_id(site: str, path: str) -> str:
    return f"{site}:{path}"


def base_document(site: str, path: str) -> dict[str, Any]:
    """The identity part of a document, and every promoted field set to None."""
    path = normalise_path(path)
    doc: dict[str, Any] = {
        "_id": doc_id(site, path),
        "site": site,
        "path": path,
        # what a re-scan reads of every document comes first: the embedded catalog's field
        # picker walks the BSON from the start and stops at the last field it wants
        "size": None,
        "mtime": None,
        "status": "error",
        "name": os.path.basename(path),
        "dir": os.path.dirname(path),
        "checksum": None,
        "error": None,
    }
    for name in PROMOTED:
        doc[name] = None
    doc.update(
        spine_version_key=None,
        inputs=[],
        inputs_count=0,
        format=None,
        format_version=None,
        complete=None,
        attrs={},
        attr_types={},
        info={},
        cfg=None,
        cfg_error=None,
        sidecar=None,
        sidecar_error=None,
        job=None,
        structure={"items": [], "count": 0, "truncated": False},
        provenance={},
        fingerprint=None,
    )
    return doc


def error_document(site: str, path: str, reason: str, st: os.stat_result | None = None) -> dict[str, Any]:
    doc = base_document(site, path)
    if st is not None:
        doc["size"] = st.st_size
        doc["mtime"] = mtime_of(st)
    doc["status"] = "error"
    doc["error"] = reason
    return doc


def mtime_of(st: os.stat_result) -> datetime:
    """mtime as a UTC datetime truncated to milliseconds (BSON dates hold milliseconds)."""
    ms = st.st_mtime_ns // 1_000_000
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def mtime_ms(value: datetime | None) -> int | None:
    """Milliseconds since the epoch of a stored mtime (naive datetimes are UTC, as pymongo returns)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(round(value.timestamp() * 1000))


def stat_problem(path: str) -> tuple[os.stat_result | None, str | None]:
    """stat() a candidate file; return (stat, None) or (maybe-lstat, reason)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return None, f"broken symbolic link (target {os.readlink(path)!r} does not exist)"
        return None, "file vanished (no longer exists)"
    except PermissionError:
        return None, "permission denied (cannot stat)"
    except OSError as exc:
        return None, f"cannot stat: {exc.strerror or exc}"
    if stat_mod.S_ISDIR(st.st_mode):
        return st, "is a directory, not a file"
    if not stat_mod.S_ISREG(st.st_mode):
        return st, "not a regular file"
    if st.st_size == 0:
        return st, "empty file (0 bytes)"
    return st, None


def open_problem(path: str, exc: BaseException) -> str:
    """A clear, one-line reason for an h5py open failure."""
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        return "permission denied (cannot read)"
    if isinstance(exc, FileNotFoundError):
        return "file vanished (no longer exists)"
    text = str(exc)
    low = text.lower()
    if "file signature not found" in low:
        return "not an HDF5 file (no HDF5 signature)"
    if "truncated file" in low or ("eof" in low and "addr" in low):
        return "truncated HDF5 file (ends before its declared size)"
    if "permission" in low:
        return "permission denied (cannot read)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"corrupt or unreadable HDF5 file: {first[:300]}"


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _name(raw: bytes | str) -> str:
    """An HDF5 link name as h5py gives it: UTF-8 text (else the raw bytes, formatted)."""
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return str(raw)
    return raw


_FAPL: list[Any] = []  # one default file-access property list per process, made on first use


def open_hdf5(path: str) -> Any:
    """``h5py.File(path, "r")``, opened through the low level with one reused file-access
    property list (h5py builds a new one for every file). Same errors as h5py.File."""
    import h5py

    if not _FAPL:
        _FAPL.append(h5py.h5p.create(h5py.h5p.FILE_ACCESS))
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=_FAPL[0])
    return h5py.File(fid)


def read_structure(h5file: Any, *, max_items: int, max_depth: int) -> dict[str, Any]:
    """Groups and datasets breadth-first, bounded in count and depth. Links are not followed.

    Walks with h5py's low-level API (one link lookup and one object open per member), which
    reads the same as ``group[name]`` without building a high-level object per member.
    Named datatypes are listed with kind ``datatype``; a member that cannot be opened gets
    kind ``unreadable`` and the reason, and the walk goes on.
    """
    from collections import deque

    from h5py import h5d, h5g, h5l, h5o

    _import_readers()

    items: list[dict[str, Any]] = []
    truncated = False
    queue: deque[tuple[Any, str, int]] = deque([(getattr(h5file, "id", h5file), "", 1)])
    while queue:
        gid, prefix, depth = queue.popleft()
        try:
            names = list(gid)
        except Exception as exc:  # a damaged group: record it and go on
            items.append({"path": prefix or "/", "kind": "unreadable", "error": str(exc)[:200]})
            continue
        for raw in names:
            if len(items) >= max_items:
                truncated = True
                queue.clear()
                break
            path = f"{prefix}/{_name(raw)}"
            entry: dict[str, Any] = {"path": path}
            try:
                link_type = gid.links.get_info(raw).type
                if link_type == h5l.TYPE_SOFT:
                    entry["kind"] = "link"
                    entry["target"] = _name(gid.links.get_val(raw))
                elif link_type == h5l.TYPE_EXTERNAL:
                    entry["kind"] = "link"
                    entry["target"] = _name(gid.links.get_val(raw)[1])
                elif link_type != h5l.TYPE_HARD:
                    entry["kind"] = "link"
                    entry["target"] = None
                else:
                    oid = h5o.open(gid, raw)
                    if isinstance(oid, h5d.DatasetID):
                        entry["kind"] = "dataset"
                        shape = oid.shape
                        dtype = spine.dtype_of(oid)
                        entry["shape"] = list(shape) if shape is not None else None
                        entry["dtype"] = _dtype_name(dtype)
                        size = 1
                        for n in shape or ():
                            size *= int(n)
                        entry["nbytes"] = int(size * dtype.itemsize) if shape is not None else 0
                    elif isinstance(oid, h5g.GroupID):
                        entry["kind"] = "group"
                        if depth < max_depth:
                            queue.append((oid, path, depth + 1))
                        else:
                            entry["truncated"] = True
                            truncated = True
                    else:
                        entry["kind"] = "datatype"
            except Exception as exc:
                entry["kind"] = "unreadable"
                entry["error"] = str(exc)[:200]
            items.append(entry)
    return {"items": items, "count": len(items), "truncated": truncated}


def _dtype_name(dtype: Any) -> str:
    if dtype.names:
        return "compound"
    text = str(dtype)
    return text if len(text) <= 64 else text[:61] + "..."


def fingerprint(doc: dict[str, Any]) -> str:
    """sha256 of the canonical attrs + info + structure: the same output anywhere hashes alike."""
    canon = {
        "attrs": doc.get("attrs"),
        "info": doc.get("info"),
        "structure": (doc.get("structure") or {}).get("items", []),
    }
    text = json.dumps(canon, sort_keys=True, default=_canon_default, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canon_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _first(value: Any) -> Any:
    """A converted attribute as a promoted value: a list's first element; None for documents,
    summaries and binary data, which promote to nothing."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, (dict, bytes)):  # bson.Binary is bytes
        return None
    return value


def promoted_from_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Promoted fields found in root attributes (keys compared case-insensitively, unescaped)."""
    _import_readers()
    lower = {convert.unescape_key(k).lower(): v for k, v in attrs.items()}
    found: dict[str, Any] = {}
    for fieldname, aliases in ATTR_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                raw = lower[alias]
                if fieldname in PROMOTED_INT:
                    values = raw if isinstance(raw, list) else [raw]
                    ints = [i for i in (spine.as_int(_first(v)) for v in values) if i is not None]
                    if not ints:
                        continue
                    found[fieldname] = min(ints)
                    if fieldname in ("run", "subrun") and len(ints) > 1:
                        found[fieldname + "_max"] = max(ints)
                else:
                    text = spine.as_str(_first(raw))
                    if text is None:
                        continue
                    found[fieldname] = text
                break
    return found


def _merge(doc: dict[str, Any], facts: dict[str, Any], source: str) -> None:
    """Fill promoted fields still unknown from ``facts`` and record where they came from."""
    for name, value in facts.items():
        if name in PROMOTED and value is not None and doc.get(name) is None:
            doc[name] = value
            doc["provenance"][name] = source


def extract(path: str | os.PathLike[str], *, site: str, limits: Limits | None = None,
            checksum: bool = False, cache: ExtractCache | None = None) -> dict[str, Any]:
    """Build the catalog document of one file. Never raises for problems of the file itself.

    ``cache`` (one per process, e.g. per ingest worker) lets files of one production share
    the work on what they have in common; the document is the same with or without it.
    """
    return fit(_build(path, site=site, limits=limits, checksum=checksum, cache=cache))


def extract_bson(path: str | os.PathLike[str], *, site: str, limits: Limits | None = None,
                 checksum: bool = False, cache: ExtractCache | None = None) -> bytes:
    """:func:`extract`'s document as BSON (what an ingest worker sends back)."""
    return extract_encoded(path, site=site, limits=limits, checksum=checksum, cache=cache)[1]


def extract_encoded(path: str | os.PathLike[str], *, site: str, limits: Limits | None = None,
                    checksum: bool = False, cache: ExtractCache | None = None
                    ) -> tuple[dict[str, Any], bytes]:
    """:func:`extract`'s document and its BSON (:func:`fit` encodes it anyway)."""
    return fit_encoded(_build(path, site=site, limits=limits, checksum=checksum, cache=cache))


def _build(path: str | os.PathLike[str], *, site: str, limits: Limits | None,
           checksum: bool, cache: ExtractCache | None) -> dict[str, Any]:
    """The document before :func:`fit` (error documents are small: they always fit)."""
    _import_readers()
    limits = limits or Limits()
    path = normalise_path(path)
    st, problem = stat_problem(path)
    if problem:
        return error_document(site, path, problem, st)
    assert st is not None
    doc = base_document(site, path)
    doc["size"] = st.st_size
    doc["mtime"] = mtime_of(st)
    try:
        f = open_hdf5(path)
        try:
            _read_hdf5(doc, f, limits, cache)
        finally:
            f.close()
    except Exception as exc:
        return error_document(site, path, open_problem(path, exc), st)

    # sidecars: <file>.h5.json and the production's job_metadata.json (never raises)
    sidecar_errors: list[str] = []
    sidecar, job = spine.read_sidecars(path, job_cache=cache.jobs if cache else None,
                                       errors=sidecar_errors, copy_job=False)
    if sidecar_errors:
        doc["sidecar_error"] = "; ".join(sidecar_errors)[:1000]
    if sidecar is not None:
        doc["sidecar"] = convert.safe_document(sidecar)
    if job is not None:
        doc["job"] = _job_document(job, path, cache)
    facts = spine.sidecar_facts(sidecar, job)
    for name, source in facts.get("provenance", {}).items():
        _merge(doc, {name: facts.get(name)}, source)
    if not doc["inputs"] and facts.get("inputs"):
        _set_inputs(doc, facts["inputs"], "sidecar")
    if not doc["inputs"] and job is not None:  # the third source: the production's task lists
        _set_inputs(doc, spine.job_inputs(path, job, cache.jobs if cache else None), "job")

    _merge(doc, spine.path_facts(path, list(limits.path_patterns)), "path")
    doc["spine_version_key"] = spine.semver_key(doc["spine_version"])

    if checksum:
        try:
            doc["checksum"] = {"sha256": sha256_file(path)}
        except OSError as exc:
            return error_document(site, path, f"cannot read for checksum: {exc.strerror or exc}", st)

    doc["status"] = "incomplete" if doc["complete"] is False else "ok"
    doc["fingerprint"] = fingerprint(doc)
    return doc


def _set_inputs(doc: dict[str, Any], inputs: list[Any], source: str) -> None:
    """``inputs`` (at most :data:`MAX_INPUTS`), their count, and where they came from
    (``provenance.inputs``: ``cfg``, ``sidecar`` or ``job``). Nothing when there are none."""
    names = [str(i) for i in inputs if i is not None]
    if not names:
        return
    doc["inputs_count"] = len(names)
    doc["inputs"] = [n[:4096] for n in names[:MAX_INPUTS]]
    doc["provenance"]["inputs"] = source


def _job_document(job: dict[str, Any], path: str, cache: ExtractCache | None) -> dict[str, Any]:
    _import_readers()
    if cache is None:
        return convert.safe_document(job)
    job_path = spine.job_metadata_path(path, cache.jobs)  # read_sidecars just remembered it
    if job_path is None:
        return convert.safe_document(job)
    converted = cache.job_docs.get(job_path)
    if converted is None:
        converted = cache.job_docs[job_path] = convert.safe_document(job)
    return cache.copy(converted)


def _parse_cfg(text: str, cache: ExtractCache | None
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """``(plain cfg, converted cfg, None)`` or ``(None, None, reason)``; entry by entry
    through the cache when the text splits cleanly, else whole (same result either way)."""
    _import_readers()
    parts = spine.split_cfg(text) if cache is not None else None
    merged = cache.cfg_entries_merged(parts) if cache is not None and parts is not None else None
    if merged is not None:
        return merged[0], cache.copy(merged[1]), None  # type: ignore[union-attr]
    cfg, reason = spine.parse_cfg_checked(text)
    if cfg is None:
        return None, None, reason
    return cfg, convert.safe_document(cfg), None


def _read_hdf5(doc: dict[str, Any], f: Any, limits: Limits,
               cache: ExtractCache | None = None) -> None:
    _import_readers()
    conv = dict(max_items=limits.max_array_items, max_string_bytes=limits.max_string_bytes)
    doc["attrs"], doc["attr_types"] = convert.read_attrs(f, **conv)
    _merge(doc, promoted_from_attrs(doc["attrs"]), "attrs")

    raw_info: dict[str, Any] = {}
    try:
        info_obj = spine.child(f, "info")
    except Exception as exc:
        info_obj = None
        doc["info"] = {"unreadable": str(exc)[:200]}
    if info_obj is not None:
        try:
            info_attrs, _ = convert.read_attrs(info_obj, raw=raw_info, **conv)
            info_attrs.pop("cfg", None)
            doc["info"] = info_attrs
        except Exception as exc:
            doc["info"] = {"unreadable": str(exc)[:200]}
    info = spine.info_from_attrs(raw_info)
    cfg_text = info.pop("cfg_text", None)
    doc["format"] = info.get("format")
    doc["format_version"] = info.get("format_version")
    doc["complete"] = info.get("complete")
    _merge(doc, {"spine_version": info.get("spine_version") or info.get("version")}, "info")

    if cfg_text:
        cfg, converted, reason = _parse_cfg(cfg_text, cache)
        if cfg is None:
            doc["cfg_error"] = reason or "cfg is not a YAML mapping"
            doc["cfg"] = convert.to_bson(cfg_text, **conv)
        else:
            doc["cfg"] = converted
            facts = spine.cfg_facts(cfg)
            _merge(doc, {k: v for k, v in facts.items() if k != "inputs"}, "cfg")
            if facts.get("inputs"):
                _set_inputs(doc, facts["inputs"], "cfg")

    doc["structure"] = read_structure(f, max_items=limits.max_structure_items,
                                      max_depth=limits.max_structure_depth)
    layout: dict[str, Any] = {"num_events": _event_count(f, doc["structure"])}
    layout.update(spine.run_ranges(f, doc["format_version"] or _layout_from_structure(doc["structure"])))
    layout.pop("runs", None)
    _merge(doc, layout, "layout")


def _layout_from_structure(structure: dict[str, Any]) -> int | None:
    """:func:`spine.detect_format_version`'s answer read from the structure walk, which met
    the root's members first (most files older than SPINE 0.16 say no ``format_version``):
    a ``/products`` group is layout 2, an ``/events`` dataset of a compound type layout 1, of
    integers layout 2. None when the walk cannot tell (links, unreadable members, a root
    with more members than the walk lists): :func:`spine.run_ranges` then asks the file."""
    first = {}
    for item in structure["items"]:
        path = item["path"]
        if path.count("/") != 1:
            break  # past the root's members (breadth-first)
        first[path] = item
    else:
        if structure.get("truncated"):
            return None
    products, events = first.get("/products"), first.get("/events")
    if products is not None:
        return spine.SPINE_CURRENT_FORMAT_VERSION if products.get("kind") == "group" else None
    if events is None or events.get("kind") != "dataset":
        return None
    dtype = events.get("dtype") or ""
    if dtype == "compound":
        return spine.SPINE_LEGACY_FORMAT_VERSION
    if dtype.lstrip("<>=|").startswith(("int", "uint")):
        return spine.SPINE_CURRENT_FORMAT_VERSION
    return None


def _event_count(f: Any, structure: dict[str, Any]) -> int | None:
    """:func:`spine.event_count`, from the structure walk when it met ``/events`` as a
    dataset (it is the first level, listed first), else by asking the file."""
    _import_readers()
    for item in structure["items"]:
        if item["path"] == "/events":
            if item.get("kind") == "dataset":
                shape = item.get("shape")
                return int(shape[0]) if shape else None
            break
    return spine.event_count(f)


def fit(doc: dict[str, Any], budget: int = MAX_DOC_BYTES) -> dict[str, Any]:
    """Shrink a document that would be too large, biggest optional parts first."""
    return fit_encoded(doc, budget)[0]


def fit_encoded(doc: dict[str, Any], budget: int = MAX_DOC_BYTES) -> tuple[dict[str, Any], bytes]:
    """:func:`fit`, and the document's BSON (encoded to check its size anyway)."""
    raw = bson.encode(doc)
    if len(raw) <= budget:
        return doc, raw
    steps = [
        ("structure", lambda d: d.update(structure={"items": d["structure"]["items"][:32],
                                                     "count": d["structure"]["count"], "truncated": True})),
        ("cfg", lambda d: d.update(cfg=_summary_of(d["cfg"]))),
        ("sidecar", lambda d: d.update(sidecar=_summary_of(d["sidecar"]))),
        ("job", lambda d: d.update(job=_summary_of(d["job"]))),
        ("inputs", lambda d: d.update(inputs=d["inputs"][:100])),
        ("info", lambda d: d.update(info={k: _small(v) for k, v in d["info"].items()})),
        ("attrs", lambda d: d.update(attrs={k: _small(v) for k, v in d["attrs"].items()})),
    ]
    shrunk = []
    for name, step in steps:
        step(doc)
        shrunk.append(name)
        if len(bson.encode(doc)) <= budget:
            break
    doc["shrunk"] = shrunk
    return doc, bson.encode(doc)


def _summary_of(value: Any) -> Any:
    if value is None:
        return None
    text = json.dumps(value, default=_canon_default, sort_keys=True)
    return {"summarized": True, "kind": "document", "bytes": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            "preview": text[:1000]}


def _small(value: Any) -> Any:
    if len(bson.encode({"v": value})) <= 16384:
        return value
    return _summary_of(value)


def main(argv: list[str] | None = None) -> int:
    """``python -m spine_docs.extract FILE...``: print each file's document as JSON."""
    from bson import json_util

    from .settings import Settings

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m spine_docs.extract FILE [FILE...]", file=sys.stderr)
        return 2
    settings = Settings.load()
    limits = Limits.from_settings(settings)
    failed = 0
    for arg in args:
        doc = extract(arg, site=settings.site, limits=limits, checksum=settings.checksum)
        failed += doc["status"] == "error"
        print(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
