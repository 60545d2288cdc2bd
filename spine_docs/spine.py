"""What SPINE files, their configuration, their sidecars and their paths mean.

Pure functions over an open :class:`h5py.File` (or any h5py group), strings and small JSON
files. Nothing here touches a database, prints, or keeps global state. Every function
tolerates missing or odd content (a file from another HDF5 producer has none of this) and
answers ``None`` fields instead of raising; every value returned is plain Python
(``int``/``float``/``str``/``bool``/``list``/``dict``/``None``), never a numpy type.

What SPINE writes (checked against ``spine/io/write/hdf5.py`` of DeepLearnPhysics/spine,
v0.1 to v0.17, and the spine-prod submitter):

* **No root attributes.** Metadata sits on ``/info``:

  - up to v0.10: an empty dataset (shape ``(0,)``) with attributes ``version`` and ``cfg``;
  - from v0.11: a group, adding ``complete`` (``False`` while a job is still writing, or
    after it crashed);
  - from v0.16: also ``spine_version``, ``format`` (``"spine_hdf5"``) and
    ``format_version`` (1 or 2). Files without ``format_version`` use layout 1.

  ``cfg`` is ``yaml.dump`` of the whole run configuration: ``model.name``,
  ``io.loader.dataset.file_keys`` / ``file_list`` (the input files),
  ``io.writer.suffix`` (spine-prod sets it to the configuration name), ...

* **Layout 1**: ``events`` is a compound dataset of HDF5 region references, one row per event
  and one field per data key; each key is a dataset (compound for objects, with attributes
  ``scalar`` and ``class_name``) or a group of ``index`` + ``elements`` / ``element_<i>``.
  ``run_info`` is a compound dataset ``{run, subrun, event}`` (class ``RunInfo``), one row per
  event.

* **Layout 2**: ``events`` is an ``int64`` range; each product lives in ``products/<key>/``
  (``values`` + ``event_offsets``, or for objects ``fixed`` compound rows + ``event_offsets``
  + ``variables/pool_<i>/values``). ``run_info`` is then ``products/run_info/fixed``. The very
  first layout-2 writer put product groups at the top level (``run_info/fixed``); both are read.

* **Production** (spine-prod) writes
  ``runs/<YYYYmmdd_HHMMSS>_spine_<detector>_<config>/tasks/chunk_NNN/task_K/output/
  <input_stem>_<suffix>.h5`` (newer releases: ``.../attempts/<stamp>/tasks/NNN_K/output/``),
  with ``job_metadata.json`` (``spine_prod_version``, ``detector``, ``config``,
  ``original_config``, ...) in the run (or attempt) directory, not in the file. Some
  productions put a SAM-style ``<file>.h5.json`` sidecar beside each file
  (``application.version``, ``parents``, ``data_tier``, ``runs``, ``first_event``, ...).
  Run and subrun numbers are not in SPINE's file names: they come from ``run_info``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import json
import math
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

__all__ = [
    "SPINE_FORMAT_NAME", "SPINE_LEGACY_FORMAT_VERSION", "SPINE_CURRENT_FORMAT_VERSION",
    "SPINE_DEFAULT_WRITER_SUFFIX", "SPINE_INFO_GROUP_SINCE", "SPINE_FORMAT_VERSION_SINCE",
    "JOB_METADATA_NAME", "SIDECAR_SUFFIX", "MAX_JOB_SEARCH_DEPTH", "MAX_JSON_BYTES",
    "MAX_RUNS", "MAX_TREE_NODES", "RUN_DIR_RE", "GENERIC_DIR_NAMES",
    "child", "dtype_of", "read_info", "info_from_attrs", "detect_format_version", "parse_cfg",
    "parse_cfg_checked", "split_cfg", "split_cfg_entry", "parse_cfg_entry", "cfg_facts",
    "dataset_from_inputs", "event_count",
    "run_ranges", "find_job_metadata", "job_metadata_path", "load_json",
    "load_json_checked", "read_sidecars", "sidecar_facts", "job_inputs", "TASK_INPUTS_NAME",
    "compile_patterns", "path_facts",
    "parse_version", "semver_key",
]

# ----------------------------------------------------------------------------- constants

#: ``/info`` attribute ``format`` written by SPINE >= 0.16.
SPINE_FORMAT_NAME = "spine_hdf5"
#: Layout of files without ``format_version`` (region references, VLEN object fields).
SPINE_LEGACY_FORMAT_VERSION = 1
#: Offset-based layout (``products/<key>/``).
SPINE_CURRENT_FORMAT_VERSION = 2
#: ``HDF5Writer(suffix=...)`` default: it says nothing about the configuration.
SPINE_DEFAULT_WRITER_SUFFIX = "spine"
#: First release whose ``/info`` is a group with ``complete``.
SPINE_INFO_GROUP_SINCE = (0, 11)
#: First release writing ``spine_version``, ``format`` and ``format_version``.
SPINE_FORMAT_VERSION_SINCE = (0, 16)

JOB_METADATA_NAME = "job_metadata.json"
#: ``<file>.h5`` -> ``<file>.h5.json``
SIDECAR_SUFFIX = ".json"
#: Directories climbed from a file looking for ``job_metadata.json``.
MAX_JOB_SEARCH_DEPTH = 6
#: JSON sidecars larger than this are not read.
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Distinct run numbers kept by :func:`run_ranges`.
MAX_RUNS = 1000
#: Values (after alias expansion) a parsed cfg or JSON sidecar may hold.
MAX_TREE_NODES = 1_000_000
_MAX_TREE_DEPTH = 200

#: A spine-prod run directory name: ``<YYYYmmdd_HHMMSS>_spine_<detector>_<config>``.
RUN_DIR_RE = re.compile(
    r"^(?P<prod_date>\d{8}_\d{6})_spine_(?P<detector>[A-Za-z0-9-]+)_(?P<config>.+)$")

#: Directory names that never name a dataset (see :func:`dataset_from_inputs`).
GENERIC_DIR_NAMES = frozenset({
    "", ".", "..", "data", "input", "inputs", "output", "outputs", "file", "files", "lists",
    "filelists", "file_lists", "larcv", "larcv2", "root", "h5", "hdf5", "reco", "tmp", "temp",
    "scratch", "sdf", "neutrino", "pnfs", "mnt", "home", "users", "user", "work", "storage",
    "tasks", "output_dir", "out",
})

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_INFO_KEYS = ("version", "spine_version", "format", "format_version", "complete", "cfg_text")
_INT_FACTS = frozenset({"run", "run_max", "subrun", "subrun_max", "event_min", "event_max",
                        "num_events"})


# ----------------------------------------------------------------------------- small helpers

def _scalar(value: Any) -> Any:
    """Unwrap a numpy scalar / one-element array into a Python value (else return as is)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return value
        value = value.reshape(()).item() if value.dtype.kind != "O" else value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    return value


def as_str(value: Any) -> str | None:
    """A trimmed, non-empty string from a str/bytes/number (numpy scalars unwrapped), else None."""
    value = _scalar(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.strip("\x00").strip()
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def as_int(value: Any) -> int | None:
    """An int64 from an int, an integral float or a numeric string (not a bool), else None."""
    value = _scalar(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 63:
            return int(value)
        return None
    if isinstance(value, str):
        try:
            return as_int(int(value.strip()))
        except ValueError:
            return None
    return None


def _as_bool(value: Any) -> bool | None:
    value = _scalar(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
    return None


def _key_str(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return str(key)


class _TooLarge(Exception):
    pass


def _plain_tree(value: Any, *, max_nodes: int = MAX_TREE_NODES, depth: int = 0) -> Any:
    """Deep copy of a YAML/JSON tree made of plain, BSON-friendly Python values.

    Mapping keys become strings; tuples/sets become lists; dates become ISO strings; integers
    outside int64 become strings; bytes become text (UTF-8, else hex); anything else its
    ``repr``. Raises :class:`_TooLarge` beyond ``max_nodes`` values (YAML aliases can expand
    exponentially) or ``_MAX_TREE_DEPTH`` levels (``depth``: where ``value`` sits in a
    larger tree, so that a part walked alone is held to the same bound as the whole).
    """
    count = 0

    def walk(v: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > max_nodes:
            raise _TooLarge(f"more than {max_nodes} values")
        if depth > _MAX_TREE_DEPTH:
            raise _TooLarge(f"nested deeper than {_MAX_TREE_DEPTH} levels")
        t = type(v)
        if t is str or t is float or v is None or t is bool:  # the common cases first, by type
            return v
        if t is dict:  # (isinstance with the Mapping ABC costs more than the walk of a value)
            return {k if type(k) is str else _key_str(k): walk(x, depth + 1) for k, x in v.items()}
        if t is list:
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, (bool, str, float)):
            return v
        if isinstance(v, int):
            return v if _INT64_MIN <= v <= _INT64_MAX else str(v)
        if isinstance(v, Mapping):
            return {_key_str(k): walk(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple, set, frozenset)):
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
            return v.isoformat()
        if isinstance(v, (bytes, bytearray)):
            try:
                return bytes(v).decode("utf-8")
            except UnicodeDecodeError:
                return bytes(v).hex()
        if isinstance(v, np.generic):
            return walk(v.item(), depth)
        return repr(v)[:1000]

    return walk(value, depth)


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


# ----------------------------------------------------------------------------- h5py access

def child(h5obj: Any, name: str) -> Any:
    """``h5obj.get(name)`` (None when missing or a dangling link; links are followed),
    through h5py's low level: the high-level ``get`` builds a ``File`` object on every
    call, which costs more than opening the member."""
    oid_parent = getattr(h5obj, "id", None)
    if not isinstance(oid_parent, (h5py.h5g.GroupID, h5py.h5f.FileID)):
        return h5obj.get(name)
    try:
        oid = h5py.h5o.open(oid_parent, name.encode("utf-8", "surrogateescape"))
    except KeyError:
        return None
    if isinstance(oid, h5py.h5d.DatasetID):
        return h5py.Dataset(oid, readonly=True)
    if isinstance(oid, h5py.h5g.GroupID):
        return h5py.Group(oid)
    return h5py.Datatype(oid)


#: HDF5 type encoding -> numpy dtype. A pure memo: building a numpy dtype from an HDF5
#: compound type costs more than opening the dataset, and a file's types repeat everywhere.
_DTYPE_MEMO: dict[bytes, np.dtype] = {}
_DTYPE_MEMO_MAX = 4096


def dtype_of(obj: Any) -> Any:
    """``obj.dtype`` of an h5py ``Dataset`` or low-level ``DatasetID`` (the same value),
    memoised by the HDF5 type's binary encoding."""
    oid = obj if isinstance(obj, h5py.h5d.DatasetID) else getattr(obj, "id", None)
    try:
        key = oid.get_type().encode()  # type: ignore[union-attr]
    except Exception:
        return obj.dtype
    dtype = _DTYPE_MEMO.get(key)
    if dtype is None:
        dtype = oid.dtype  # type: ignore[union-attr]
        if len(_DTYPE_MEMO) >= _DTYPE_MEMO_MAX:
            _DTYPE_MEMO.clear()
        _DTYPE_MEMO[key] = dtype
    return dtype


# ----------------------------------------------------------------------------- /info

def read_info(h5file: Any) -> dict[str, Any]:
    """``{version, spine_version, format, format_version, complete, cfg_text}`` from ``/info``.

    ``/info`` may be a dataset (SPINE < 0.11) or a group; any missing or unreadable attribute
    is None. ``format_version`` is returned as stored (None for files older than 0.16, which
    use layout 1; see :func:`detect_format_version`).
    """
    out: dict[str, Any] = dict.fromkeys(_INFO_KEYS)
    try:
        info = child(h5file, "info")
        attrs = info.attrs if info is not None else None
    except Exception:
        return out
    if attrs is None:
        return out

    values: dict[str, Any] = {}
    for name in ("version", "spine_version", "format", "format_version", "complete", "cfg"):
        try:
            if name in attrs:
                values[name] = attrs[name]
        except Exception:
            continue
    return info_from_attrs(values)


def info_from_attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`read_info`'s answer from ``/info``'s attributes already read (name -> value as
    h5py returns it; missing names are None)."""
    out: dict[str, Any] = dict.fromkeys(_INFO_KEYS)
    out["version"] = as_str(values.get("version"))
    out["spine_version"] = as_str(values.get("spine_version"))
    out["format"] = as_str(values.get("format"))
    out["format_version"] = as_int(values.get("format_version"))
    out["complete"] = _as_bool(values.get("complete"))
    cfg = _scalar(values.get("cfg"))
    if isinstance(cfg, bytes):
        cfg = cfg.decode("utf-8", errors="replace")
    out["cfg_text"] = cfg if isinstance(cfg, str) and cfg.strip() else None
    return out


def detect_format_version(h5file: Any) -> int | None:
    """Layout of a file from its content: 2 (offsets), 1 (region references) or None."""
    try:
        products = child(h5file, "products")
        if products is not None and hasattr(products, "keys") and not hasattr(products, "dtype"):
            return SPINE_CURRENT_FORMAT_VERSION
        events = child(h5file, "events")
        dtype = (dtype_of(events) if isinstance(events, h5py.Dataset)
                 else getattr(events, "dtype", None))
        if dtype is None:
            return None
        if dtype.names:
            return SPINE_LEGACY_FORMAT_VERSION
        if dtype.kind in "iu":
            return SPINE_CURRENT_FORMAT_VERSION
    except Exception:
        return None
    return None


# ----------------------------------------------------------------------------- cfg

_LoaderBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfgLoader(_LoaderBase):  # type: ignore[misc, valid-type]
    """Safe YAML loader that reads unknown tags (``!!python/tuple``, numpy scalars dumped by
    ``yaml.dump``, custom ``!tags``) as the plain mapping/sequence/scalar they wrap."""


def _construct_any(loader: Any, _suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_CfgLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_any)
_CfgLoader.add_multi_constructor("!", _construct_any)
_CfgLoader.add_multi_constructor("tag:", _construct_any)


def parse_cfg_checked(text: Any, *, depth: int = 0) -> tuple[dict[str, Any] | None, str | None]:
    """``(cfg, None)`` for a YAML mapping, else ``(None, reason)``. Never raises.

    ``depth`` is how deep the mapping sits in a larger configuration (for a part parsed
    alone, see :func:`split_cfg`); the depth bound counts from there."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str) or not text.strip():
        return None, "cfg is empty"
    try:
        value = yaml.load(text, Loader=_CfgLoader)  # noqa: S506 - a SafeLoader subclass
    except Exception as exc:  # yaml.YAMLError, RecursionError, ValueError, ...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"cfg is not valid YAML: {first_line[:200]}"
    if not isinstance(value, Mapping):
        return None, f"cfg is not a YAML mapping (got {type(value).__name__})"
    try:
        return _plain_tree(value, depth=depth), None
    except (_TooLarge, RecursionError) as exc:
        return None, f"cfg is too large: {exc}"


#: A ``cfg`` longer than this is always parsed whole (see :func:`split_cfg`).
CFG_SPLIT_MAX_CHARS = 256 * 1024
_CFG_ANCHOR_RE = re.compile(r"(?:^|[\s\[\{,])[&*][^\s\[\]\{\},]", re.MULTILINE)
_CFG_BAD_HEAD = frozenset("?:{}[]%!&*|>@`,")


def split_cfg(text: Any) -> list[str] | None:
    """The top-level entries of a YAML mapping as separate texts, or None.

    A production's files share their configuration except for a few lines (the input file
    of each job sits under ``io``), so a caller can parse each top-level entry once and reuse
    it (see ``extract.ExtractCache``). The parts keep their line ends: ``"".join(parts)`` is
    exactly ``text`` (a block scalar's last line break is part of its value).
    An entry starts at a line that begins, at column 0, with the start of a plain or quoted
    key; comments, blank lines, indented lines and ``- `` items at column 0 belong to the
    entry above (YAML ends every block scalar, plain scalar and nested block before a
    column-0 key). None, so that the text is parsed whole, when the text is over
    :data:`CFG_SPLIT_MAX_CHARS`, has anything that looks like an anchor or alias (entries
    may refer to each other), a column-0 line starting with an indicator (``?``, ``:``,
    flow brackets, ``%`` directives, tags, ...), or no entry at all. Whoever uses the parts
    must still check that each parses to a mapping with exactly one key, and parse the
    text whole otherwise: an entry cut out of a multi-line quoted or flow scalar does not.
    """
    if not isinstance(text, str) or len(text) > CFG_SPLIT_MAX_CHARS or _CFG_ANCHOR_RE.search(text):
        return None
    return _split_lines(_lines(text))


def _lines(text: str) -> list[str]:
    """``text`` cut after each ``\n`` (the only line break split_cfg cuts at)."""
    lines = text.split("\n")
    last = lines.pop()
    out = [line + "\n" for line in lines]
    if last:
        out.append(last)
    return out


_BLANK_OR_COMMENT_START = ("", " ", "\t", "\r", "\n", "#")
_ITEM_SECOND = ("", " ", "\t", "\r", "\n")


def _split_lines(lines: list[str]) -> list[str] | None:
    parts: list[list[str]] = []
    head: list[str] = []
    for line in lines:
        first = line[:1]
        if first in _BLANK_OR_COMMENT_START or (first == "-" and line[1:2] in _ITEM_SECOND):
            (parts[-1] if parts else head).append(line)
        elif first in _CFG_BAD_HEAD:
            return None
        else:
            parts.append([line])
    if not parts:
        return None
    parts[0][:0] = head
    return ["".join(lines) for lines in parts]


_CFG_NESTED_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*:[ \t]*\r?\n?")


def split_cfg_entry(entry: str) -> tuple[str, list[str]] | None:
    """``(key, parts)`` of an entry ``key:`` whose value is an indented block mapping: its
    own entries, dedented, as :func:`split_cfg` cuts them; None for any other entry.

    Dedenting a block mapping by its own indentation keeps its meaning (block scalars,
    plain and flow scalars are all read relative to it), so each part parses alone, at
    ``depth + 1``, to what it is in place. None, so that the entry is parsed as one, when the
    key is not a plain word, when anything follows the colon, when a line of the value is
    less indented than its first line (other than a comment or a blank line), or when the
    value is a sequence or uses tabs.
    """
    lines = _lines(entry)
    head = lines[0]
    if not _CFG_NESTED_HEAD.fullmatch(head):
        return None
    indent = 0
    for line in lines[1:]:
        stripped = line.lstrip(" ")
        if not stripped.strip() or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent == 0 or stripped.startswith(("-", "\t")):
            return None
        break
    if indent == 0:
        return None
    body: list[str] = []
    pad = " " * indent
    for line in lines[1:]:
        if line.startswith(pad):
            if line[indent:indent + 1] == "\t":
                return None
            body.append(line[indent:])
            continue
        if "\t" in line:
            return None
        stripped = line.lstrip(" ")
        if not stripped.strip():
            body.append("\n" if line.endswith("\n") else "")
        elif stripped.startswith("#"):
            body.append(stripped)
        else:
            return None
    parts = _split_lines(body)  # the text it comes from passed split_cfg's checks
    name = _entry_key(head)
    if parts is None or name is None:
        return None
    return name, parts


@functools.lru_cache(maxsize=1024)
def _entry_key(head: str) -> str | None:
    """The key of a ``key:`` line as :func:`parse_cfg` reads it (YAML resolves ``true:``,
    ``null:``, ``1e3:`` ... to other types, then :func:`_plain_tree` makes them strings)."""
    parsed = parse_cfg_entry(head)
    if parsed is None:
        return None
    (name, value), = parsed.items()
    return name if value is None else None


def parse_cfg_entry(text: str, *, depth: int = 0) -> dict[str, Any] | None:
    """One part of :func:`split_cfg` as a plain one-key dict (as :func:`parse_cfg` makes
    it), or None when it is not exactly a one-key mapping on its own (then parse whole)."""
    cfg, _reason = parse_cfg_checked(text, depth=depth)
    return cfg if cfg is not None and len(cfg) == 1 else None


def parse_cfg(text: Any) -> dict[str, Any] | None:
    """The run configuration as a plain dict (string keys), None when not a YAML mapping."""
    return parse_cfg_checked(text)[0]


def _collect_inputs(tree: Any, out: list[str], depth: int = 0) -> None:
    """Values of every ``file_keys`` / ``file_list`` key, depth first, in document order."""
    if depth > 20:
        return
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if key in ("file_keys", "file_list"):
                values = value if isinstance(value, list) else [value]
                out.extend(v.strip() for v in values if isinstance(v, str) and v.strip())
            elif isinstance(value, (Mapping, list)):
                _collect_inputs(value, out, depth + 1)
    elif isinstance(tree, list):
        for value in tree:
            if isinstance(value, (Mapping, list)):
                _collect_inputs(value, out, depth + 1)


def cfg_facts(cfg: Any) -> dict[str, Any]:
    """``{model, dataset, config, inputs}`` from a parsed run configuration.

    * ``model``: ``model.name`` (None for analysis-only configurations without a model).
    * ``config``: ``io.writer.suffix``: spine-prod sets it to the configuration name
      (``Path(config).stem``); SPINE's default ``"spine"`` says nothing and gives None.
    * ``inputs``: every string under a ``file_keys`` or ``file_list`` key of the ``io``
      block (``io.loader.dataset.file_keys``, ``io.reader.file_keys``, ...), in order, without
      duplicates (globs and ``.txt`` file lists are kept as written).
    * ``dataset``: :func:`dataset_from_inputs` of ``inputs``.
    """
    out: dict[str, Any] = {"model": None, "dataset": None, "config": None, "inputs": []}
    if not isinstance(cfg, Mapping):
        return out
    model = cfg.get("model")
    if isinstance(model, Mapping):
        model = model.get("name")
    out["model"] = as_str(model) if isinstance(model, str) else None

    suffix = _get(cfg, "io", "writer", "suffix")
    if isinstance(suffix, str) and suffix.strip() and suffix.strip() != SPINE_DEFAULT_WRITER_SUFFIX:
        out["config"] = suffix.strip()

    io_block = cfg.get("io")
    found: list[str] = []
    _collect_inputs(io_block if isinstance(io_block, Mapping) else {}, found)
    out["inputs"] = list(dict.fromkeys(found))
    out["dataset"] = dataset_from_inputs(out["inputs"])
    return out


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")
_NUMERIC_DIR = re.compile(r"^(?:\d+|[0-9a-f]{2})$")
_STEM_TAIL = re.compile(r"(?:[_.-](?:\d+|spine|larcv|reco|out(?:put)?))+$", re.IGNORECASE)


def _input_dataset(path: str) -> str | None:
    path = _SCHEME_RE.sub("", path.strip())   # root://host:1094//pnfs/... -> //pnfs/...
    parts = posixpath.dirname(path.replace("\\", "/")).split("/")
    prod = next((m for m in map(RUN_DIR_RE.match, parts) if m), None)
    if prod is not None:
        # the output of an earlier spine-prod stage: <input_stem>_<config>.h5
        stem = posixpath.basename(path).split(".", 1)[0]
        suffix = "_" + prod.group("config")
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
        return _STEM_TAIL.sub("", stem) or None
    for part in reversed(parts):
        if _GLOB_CHARS.search(part) or part.lower() in GENERIC_DIR_NAMES or _NUMERIC_DIR.match(part):
            continue
        if re.fullmatch(r"v?\d+(?:\.\d+)*", part):   # a bare version directory
            continue
        return part
    stem = posixpath.basename(path)
    if _GLOB_CHARS.search(stem):
        return None
    stem = stem.split(".", 1)[0]
    stem = _STEM_TAIL.sub("", stem)
    return stem or None


def dataset_from_inputs(inputs: Iterable[Any]) -> str | None:
    """The dataset a file was made from, derived from its input paths.

    The rule: for each input, walk its directory
    from the deepest component up and take the first one that is not generic (the names in
    :data:`GENERIC_DIR_NAMES`, numeric or two-hex-digit shard directories, bare versions
    like ``v2``, glob patterns), after dropping any ``scheme://host`` prefix; when no
    directory qualifies, the file stem without trailing numbers/``_spine``/``_larcv``.
    An input inside a spine-prod run directory (the output of an earlier stage) gives its
    stem without the ``_<config>`` suffix, as above. ``.txt`` file lists are ignored.
    ``/sdf/data/neutrino/icarus/mpvmpr_v1/larcv/000/mpvmpr_v1_0001.root`` gives
    ``mpvmpr_v1``. When inputs disagree, or there are none, the dataset is None.
    """
    names = set()
    for item in inputs or ():
        if isinstance(item, str) and item.strip() and not item.strip().lower().endswith(".txt"):
            names.add(_input_dataset(item))
    names.discard(None)
    return names.pop() if len(names) == 1 else None


# ----------------------------------------------------------------------------- events / runs

def _dataset(h5file: Any, name: str) -> Any:
    try:
        obj = child(h5file, name)
    except Exception:
        return None
    return obj if obj is not None and hasattr(obj, "dtype") and hasattr(obj, "shape") else None


def event_count(h5file: Any) -> int | None:
    """Number of events: rows of ``events`` (both layouts), else of the run-info table."""
    events = _dataset(h5file, "events")
    if events is not None:
        try:
            shape = events.shape
            return int(shape[0]) if shape else None
        except Exception:
            return None
    table = _run_info_table(h5file, None)
    if table is not None:
        try:
            return int(table.shape[0]) if table.shape else None
        except Exception:
            return None
    return None


def _is_run_table(ds: Any) -> bool:
    try:
        names = (dtype_of(ds) if isinstance(ds, h5py.Dataset) else ds.dtype).names or ()
        return len(ds.shape) == 1 and ("run" in names or "event" in names)
    except Exception:
        return False


def _run_info_table(h5file: Any, format_version: int | None) -> Any:
    """The compound dataset holding ``run``/``subrun``/``event`` per event, or None."""
    v2 = ("products/run_info/fixed", "run_info/fixed")
    v1 = ("run_info",)
    order = v2 + v1 if format_version == SPINE_CURRENT_FORMAT_VERSION else v1 + v2
    for name in order:
        ds = _dataset(h5file, name)
        if ds is not None and _is_run_table(ds):
            return ds
    # any product whose class is RunInfo (renamed keys), at the top level or under products/
    for parent_name in ("products", None):
        try:
            parent = child(h5file, parent_name) if parent_name else h5file
            if parent is None or not hasattr(parent, "keys"):
                continue
            for key in list(parent.keys())[:500]:
                obj = parent.get(key)
                if obj is None:
                    continue
                if as_str(obj.attrs.get("class_name")) != "RunInfo":
                    continue
                ds = obj if hasattr(obj, "dtype") else obj.get("fixed")
                if ds is not None and hasattr(ds, "dtype") and _is_run_table(ds):
                    return ds
        except Exception:
            continue
    # non-SPINE producers sometimes put run/subrun/event in a compound `events`
    ds = _dataset(h5file, "events")
    if ds is not None and _is_run_table(ds):
        return ds
    return None


def _clean(values: np.ndarray) -> np.ndarray:
    """A run-info column as int64, with negative values (``RunInfo``'s default ``-1`` =
    unknown), NaN and out-of-range values dropped."""
    values = values.reshape(-1)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
        values = values[(values >= 0) & (values < 2.0 ** 63)].astype(np.int64)
    elif values.dtype.kind == "u":
        values = values[values <= np.uint64(_INT64_MAX)].astype(np.int64)
    else:
        values = values.astype(np.int64, copy=False)
        values = values[values >= 0]
    return values


@functools.lru_cache(maxsize=_DTYPE_MEMO_MAX)
def _memory_type(dtype: np.dtype) -> Any:
    """The HDF5 memory type of a numpy dtype, made once: the run-info columns' are the same
    in every file of a production, and making one costs more than the read it serves."""
    return h5py.h5t.py_create(dtype)


def _columns(ds: Any, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The numeric scalar fields ``names`` of a 1-d compound dataset, cleaned (see
    :func:`_clean`). One HDF5 read with a memory type of just those members (HDF5 converts
    compound members by name, so the other fields are never read); field by field through
    h5py when that fails."""
    try:
        fields = (dtype_of(ds) if isinstance(ds, h5py.Dataset) else ds.dtype).fields or {}
        wanted = [n for n in names if n in fields and not fields[n][0].shape
                  and fields[n][0].kind in "iuf"]
    except Exception:
        return {}
    if not wanted:
        return {}
    try:
        mdt = np.dtype([(n, fields[n][0]) for n in wanted])
        table = np.empty(ds.shape, dtype=mdt)
        if table.size:
            ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, table, mtype=_memory_type(mdt))
        return {n: _clean(table[n]) for n in wanted}
    except Exception:
        pass
    out: dict[str, np.ndarray] = {}
    for n in wanted:
        try:
            out[n] = _clean(np.asarray(ds.fields(n)[()] if hasattr(ds, "fields") else ds[n]))
        except Exception:
            continue
    return out


def run_ranges(h5file: Any, format_version: int | None = None) -> dict[str, Any]:
    """``{run, run_max, subrun, subrun_max, event_min, event_max, runs}`` from ``run_info``.

    Reads only the three needed columns of the run-info table (``run_info`` in layout 1,
    ``products/run_info/fixed`` in layout 2; ``format_version`` None means: detect), in one
    HDF5 read, with vectorised numpy. ``run``/``subrun`` are the smallest values, ``*_max``
    the largest, ``runs`` the sorted distinct run numbers (at most :data:`MAX_RUNS`).
    Negative values (``RunInfo``'s "unset" ``-1``) are ignored. Everything None
    (``runs == []``) when absent.
    """
    out: dict[str, Any] = {"run": None, "run_max": None, "subrun": None, "subrun_max": None,
                           "event_min": None, "event_max": None, "runs": []}
    if format_version not in (SPINE_LEGACY_FORMAT_VERSION, SPINE_CURRENT_FORMAT_VERSION):
        format_version = detect_format_version(h5file)
    table = _run_info_table(h5file, format_version)
    if table is None:
        return out
    columns = _columns(table, ("run", "subrun", "event"))
    for field, low, high in (("run", "run", "run_max"), ("subrun", "subrun", "subrun_max"),
                             ("event", "event_min", "event_max")):
        values = columns.get(field)
        if values is None or values.size == 0:
            continue
        out[low] = int(values.min())
        out[high] = int(values.max())
        if field == "run":
            out["runs"] = [int(r) for r in np.unique(values)[:MAX_RUNS]]
    return out


# ----------------------------------------------------------------------------- sidecars

def load_json_checked(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)``; ``(None, None)`` when the file does not exist; ``(None, reason)``
    when it exists but is unreadable, too large, not JSON or not a JSON object."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, f"{os.fspath(path)}: is a directory"
    except OSError as exc:
        return None, f"{os.fspath(path)}: {exc.strerror or exc}"
    if len(raw) > MAX_JSON_BYTES:
        return None, f"{os.fspath(path)}: larger than {MAX_JSON_BYTES} bytes"
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"{os.fspath(path)}: not JSON ({str(exc)[:120]})"
    if not isinstance(value, dict):
        return None, f"{os.fspath(path)}: not a JSON object"
    try:
        return _plain_tree(value), None
    except (_TooLarge, RecursionError) as exc:
        return None, f"{os.fspath(path)}: too large ({exc})"


def load_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object file as a plain dict, or None (missing, unreadable, not an object)."""
    return load_json_checked(path)[0]


def find_job_metadata(path: str | os.PathLike[str],
                      memo: dict[Any, Any] | None = None) -> Path | None:
    """The ``job_metadata.json`` of the production a file belongs to, or None.

    Climbs from the file's directory at most :data:`MAX_JOB_SEARCH_DEPTH` levels and stops at
    the spine-prod run directory (``runs/<stamp>_spine_<detector>_<config>``, whose own
    ``job_metadata.json`` or ``latest/job_metadata.json`` is the last place looked at).
    Symbolic links in the path are kept (not resolved). ``memo`` (a dict the caller keeps
    for one run) remembers the answer for every directory passed on the way, so files in
    sibling directories (spine-prod gives each task its own) stop climbing where an earlier
    file's climb went through.
    """
    try:  # strings and os.stat, not Path objects: this runs for every file of an inject
        directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    except (TypeError, ValueError):
        return None
    visited: list[tuple[str, str, int]] = []
    found: Path | None = None
    for step in range(MAX_JOB_SEARCH_DEPTH):
        key = ("climb", directory, MAX_JOB_SEARCH_DEPTH - step)
        if memo is not None and key in memo:
            found = memo[key]
            break
        visited.append(key)
        try:
            candidate = os.path.join(directory, JOB_METADATA_NAME)
            if _is_file(candidate):
                found = Path(candidate)
                break
            parent = os.path.dirname(directory)
            if RUN_DIR_RE.match(os.path.basename(directory)) and os.path.basename(parent) == "runs":
                latest = os.path.join(directory, "latest", JOB_METADATA_NAME)
                found = Path(latest) if _is_file(latest) else None
                break
        except OSError:
            found = None
            break
        if parent == directory:
            break
        directory = parent
    if memo is not None:
        for key in visited:
            memo[key] = found
    return found


def _is_file(path: str) -> bool:
    """``Path(path).is_file()``: False when it is missing (or a path through a non-directory,
    a symlink loop), OSError for any other failure (no permission)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise


#: read_sidecars forgets its memo beyond this many entries (it holds one per directory).
MAX_JOB_CACHE = 100_000


def job_metadata_path(path: str | os.PathLike[str], job_cache: dict[str, Any] | None = None
                      ) -> str | None:
    """:func:`find_job_metadata` as a string, remembered per directory in ``job_cache``
    (the dict :func:`read_sidecars` takes), so a second file of a directory costs one lookup."""
    dir_key = "dir:" + os.path.dirname(os.path.abspath(os.fspath(path)))
    if job_cache is not None and dir_key in job_cache:
        return job_cache[dir_key]
    found = find_job_metadata(path, memo=job_cache)
    job_path = os.fspath(found) if found is not None else None
    if job_cache is not None:
        job_cache[dir_key] = job_path
    return job_path


def read_sidecars(path: str | os.PathLike[str], *, job_cache: dict[str, Any] | None = None,
                  errors: list[str] | None = None, copy_job: bool = True
                  ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(sidecar, job)``: ``<file>.h5.json`` and the production's ``job_metadata.json``.

    Each is a plain dict or None (missing, unreadable, not a JSON object). Never raises:
    problems with a file that exists are appended to ``errors`` when a list is given.
    ``job_cache`` (any dict the caller keeps, e.g. for one ingest run) memoises the search per
    directory and the parsed job file per path, so thousands of files of one production read
    ``job_metadata.json`` once; it is emptied when it holds over :data:`MAX_JOB_CACHE`
    entries. The job returned is the caller's to change (a copy of the cached one) unless
    ``copy_job`` is False.
    """
    fspath = os.fspath(path)
    sidecar, problem = load_json_checked(fspath + SIDECAR_SUFFIX)
    if problem and errors is not None:
        errors.append(problem)

    if job_cache is not None and len(job_cache) > MAX_JOB_CACHE:
        job_cache.clear()
    job_path = job_metadata_path(fspath, job_cache)
    job = None
    if job_path is not None:
        job_key = "job:" + job_path
        if job_cache is not None and job_key in job_cache:
            job, problem = job_cache[job_key]
        else:
            job, problem = load_json_checked(job_path)
            if job_cache is not None:
                job_cache[job_key] = (job, problem)
        if problem and errors is not None:
            errors.append(problem)
        if job is not None and job_cache is not None and copy_job:
            job = json.loads(json.dumps(job))  # callers may mutate their copy
    return sidecar, job


#: spine-prod's list of a task's input files, one path a line, in the task directory beside
#: ``output/`` (``tasks/chunk_NNN/task_K/inputs.txt``)
TASK_INPUTS_NAME = "inputs.txt"
#: file lists larger than this are not read
MAX_LIST_BYTES = 64 * 1024 * 1024
_SOURCE_LIST_RE = re.compile(r"(?:^|\s)(?:--source-list|-S)(?:=|\s+)(\S+)")


def _file_list(path: str, job_cache: dict[str, Any] | None) -> dict[str, list[str]] | None:
    """A list of files (one a line; blank lines and ``#`` comments skipped) as ``{input stem:
    [entries]}`` plus ``"": every entry``; None when it cannot be read. Memoised in
    ``job_cache`` (a production's list is read once per run, not once per file)."""
    key = "list:" + path
    if job_cache is not None and key in job_cache:
        return job_cache[key]
    index: dict[str, list[str]] | None = None
    try:
        if os.path.isfile(path) and os.path.getsize(path) <= MAX_LIST_BYTES:
            with open(path, encoding="utf-8", errors="replace") as f:
                entries = [line.strip() for line in f]
            entries = [e for e in entries if e and not e.startswith("#")]
            index = {"": entries}
            for e in entries:
                index.setdefault(os.path.splitext(posixpath.basename(e.replace("\\", "/")))[0], []).append(e)
    except OSError:
        index = None
    if job_cache is not None:
        job_cache[key] = index
    return index


def job_inputs(path: str | os.PathLike[str], job: Any, job_cache: dict[str, Any] | None = None
               ) -> list[str]:
    """The input files of a spine-prod output file, from its production's layout and job
    metadata (the third source of a file's ``inputs``, after the ``cfg``'s ``io`` block and
    the sidecar's ``parents``); ``[]`` when they cannot be told.

    spine-prod (``src/submitter.py``) gives each task a directory ``tasks/chunk_NNN/task_K/``
    holding ``inputs.txt`` (the task's input files, one a line) and ``output/``, where SPINE
    writes ``<input_stem>_<output_suffix>.h5`` (``output_suffix`` in ``job_metadata.json``,
    by default the stem of ``config``). So, in order:

    1. the task's ``inputs.txt`` (beside the ``output`` directory holding the file): the
       entries whose stem is the file's stem minus ``_<output_suffix>``, else every entry (a
       task's outputs are made from its inputs);
    2. the ``--source-list FILE`` (or ``-S FILE``) of the job's ``command``: the entries with
       that stem. A relative FILE is relative to where ``submit.py`` ran, unknown here: it is
       looked for beside ``job_metadata.json`` (where a production keeping its list puts a
       copy).

    Assumed from spine-prod's code, not from a real production tree: none was at hand. A
    bare input stem is never recorded by itself (without its extension it names no file the
    lineage could resolve).
    """
    fspath = os.fspath(path)
    jb = _lower_keys(job) if isinstance(job, Mapping) else {}
    suffix = as_str(jb.get("output_suffix")) if isinstance(jb.get("output_suffix"), str) else None
    suffix = suffix or _config_name(jb.get("config"))
    stem = os.path.splitext(os.path.basename(fspath))[0]
    input_stem = stem[: -len(suffix) - 1] if suffix and stem.endswith("_" + suffix) and \
        len(stem) > len(suffix) + 1 else None
    directory = os.path.dirname(fspath)
    if os.path.basename(directory) == "output":
        task_list = _file_list(os.path.join(os.path.dirname(directory), TASK_INPUTS_NAME), job_cache)
        if task_list and task_list[""]:
            return list((input_stem is not None and task_list.get(input_stem)) or task_list[""])
    command = jb.get("command")
    if input_stem is None or not isinstance(command, str):
        return []
    m = _SOURCE_LIST_RE.search(command)
    if not m:
        return []
    listed = m.group(1).strip("'\"")
    if not os.path.isabs(listed):
        job_path = job_metadata_path(fspath, job_cache)
        if job_path is None:
            return []
        listed = os.path.join(os.path.dirname(job_path), listed)
    source_list = _file_list(listed, job_cache)
    return list((source_list or {}).get(input_stem) or [])


def _config_name(value: Any) -> str | None:
    text = as_str(value) if isinstance(value, (str, bytes)) else None
    if not text:
        return None
    name = posixpath.basename(text.replace("\\", "/"))
    for ext in (".cfg", ".yaml", ".yml", ".json"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return name or None


def _names(values: Any) -> list[str]:
    """File names out of a SAM ``parents`` list (strings or ``{"file_name": ...}`` objects)."""
    out: list[str] = []
    if isinstance(values, (str, dict)):
        values = [values]
    if not isinstance(values, list):
        return out
    for item in values:
        if isinstance(item, dict):
            item = item.get("file_name") or item.get("name") or item.get("did") or item.get("path")
        text = as_str(item) if isinstance(item, str) else None
        if text:
            out.append(text)
    return out


def _lower_keys(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in d.items() if isinstance(k, str)}


def sidecar_facts(sidecar: Any, job: Any) -> dict[str, Any]:
    """Promoted fields a file's sidecar and its production's job metadata give.

    Keys (None when unknown): ``spine_version``, ``prod_version``, ``model``, ``dataset``,
    ``detector``, ``config``, ``run``, ``run_max``, ``subrun``, ``subrun_max``,
    ``event_min``, ``event_max``, ``num_events``, ``data_tier``, ``job_name``, ``submitted``,
    ``inputs`` (the sidecar's ``parents``; ``[]`` when none) and ``provenance``
    (``{field: "sidecar"|"job"}`` for the fields found). The per-file sidecar wins over the
    job metadata.

    * sidecar (SAM style): ``application.version`` is the SPINE version (the production
      version when ``application.name``/``family`` names spine-prod); ``runs``
      (``[[run, subrun, type], ...]``), ``first_event``, ``last_event``, ``event_count``,
      ``data_tier``, ``parents``; plain keys ``spine_version``, ``prod_version``,
      ``detector``, ``dataset``/``Dataset.Tag``, ``model``, ``config`` when present.
    * job (spine-prod): ``spine_prod_version``, ``detector``, the stem of
      ``original_config`` (else ``config``), ``job_name``, ``submitted``.
    """
    facts: dict[str, Any] = {k: None for k in (
        "spine_version", "prod_version", "model", "dataset", "detector", "config", "run",
        "run_max", "subrun", "subrun_max", "event_min", "event_max", "num_events", "data_tier",
        "job_name", "submitted")}
    facts["inputs"] = []
    provenance: dict[str, str] = {}

    def put(name: str, value: Any, source: str) -> None:
        if value is None or facts.get(name) is not None:
            return
        value = as_int(value) if name in _INT_FACTS else as_str(value)
        if value is not None:
            facts[name] = value
            provenance[name] = source

    if isinstance(sidecar, Mapping):
        sc = _lower_keys(sidecar)
        app = sc.get("application")
        if isinstance(app, Mapping):
            app = _lower_keys(app)
            label = " ".join(str(app.get(k) or "") for k in ("name", "family")).lower()
            target = "prod_version" if re.search(r"prod", label) else "spine_version"
            put(target, app.get("version"), "sidecar")
        put("spine_version", sc.get("spine_version"), "sidecar")
        put("prod_version", sc.get("prod_version") or sc.get("spine_prod_version"), "sidecar")
        put("detector", sc.get("detector"), "sidecar")
        put("dataset", sc.get("dataset") or sc.get("dataset_name") or sc.get("dataset.tag"), "sidecar")
        put("model", sc.get("model") or sc.get("model_name"), "sidecar")
        put("config", _config_name(sc.get("config") or sc.get("config_name")), "sidecar")
        put("data_tier", sc.get("data_tier"), "sidecar")
        runs = sc.get("runs")
        pairs = []
        if isinstance(runs, list):
            for item in runs:
                if isinstance(item, list) and item:
                    r = as_int(item[0])
                    s = as_int(item[1]) if len(item) > 1 else None
                    if r is not None:
                        pairs.append((r, s))
        if pairs:
            put("run", min(r for r, _ in pairs), "sidecar")
            put("run_max", max(r for r, _ in pairs), "sidecar")
            subs = [s for _, s in pairs if s is not None]
            if subs:
                put("subrun", min(subs), "sidecar")
                put("subrun_max", max(subs), "sidecar")
        put("run", sc.get("run"), "sidecar")
        put("subrun", sc.get("subrun"), "sidecar")
        for name, sam_name in (("event_min", "first_event"), ("event_max", "last_event"),
                               ("num_events", "event_count")):
            put(name, sc.get(sam_name), "sidecar")
            put(name, sc.get(name), "sidecar")
        facts["inputs"] = _names(sc.get("parents"))

    if isinstance(job, Mapping):
        jb = _lower_keys(job)
        put("prod_version", jb.get("spine_prod_version") or jb.get("prod_version"), "job")
        put("detector", jb.get("detector"), "job")
        put("config", _config_name(jb.get("original_config") or jb.get("config")), "job")
        put("job_name", jb.get("job_name"), "job")
        put("submitted", jb.get("submitted"), "job")
        put("spine_version", jb.get("spine_version"), "job")
        put("dataset", jb.get("dataset"), "job")
        put("model", jb.get("model"), "job")

    facts["provenance"] = provenance
    return facts


# ----------------------------------------------------------------------------- paths

def compile_patterns(patterns: Iterable[str | re.Pattern[str]]) -> list[re.Pattern[str]]:
    """Compile path patterns; raises ``ValueError`` naming the first invalid one (for
    validating settings early; :func:`path_facts` itself skips invalid patterns)."""
    out = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            out.append(pattern)
            continue
        try:
            out.append(re.compile(pattern))
        except (re.error, TypeError) as exc:
            raise ValueError(f"invalid path pattern {pattern!r}: {exc}") from None
    return out


def path_facts(path: str | os.PathLike[str], patterns: Iterable[str | re.Pattern[str]]) -> dict[str, Any]:
    """Named groups of the patterns that match ``path`` (``re.search``), in order.

    Each pattern fills only the fields still unknown, so a list can combine a production
    layout with run/version conventions. Integers for ``run``, ``subrun`` (and the other
    count fields); only matched, non-empty groups appear; invalid patterns are skipped.
    """
    text = os.fspath(path)
    out: dict[str, Any] = {}
    for pattern in patterns or ():
        try:
            match = re.search(pattern, text)
        except (re.error, TypeError):
            continue
        if not match:
            continue
        for name, value in match.groupdict().items():
            if value is None or value == "" or name in out:
                continue
            if name in _INT_FACTS:
                number = as_int(value)
                if number is not None:
                    out[name] = number
            else:
                out[name] = value
    return out


# ----------------------------------------------------------------------------- versions

from .versions import parse_version, semver_key  # noqa: E402  (here for spine's callers)
