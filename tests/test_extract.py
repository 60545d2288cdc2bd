"""extract.py: file -> document, on SPINE files of every family and on bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import bson
import h5py
import numpy as np
import pytest

from spine_docs import extract as ex
from spine_docs import samples, spine
from spine_docs.extract import Limits, extract

SITE = "testsite"


def doc_of(path, **kw):
    doc = extract(path, site=SITE, **kw)
    bson.encode(doc)  # every document must be BSON-safe
    return doc


def test_spine_v017_format2(tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", spine_version="0.17.1", format_version=2,
                                 n_events=7, run=12, subrun=3, first_event=100, model="full_chain",
                                 dataset="mpvmpr_v1", config="full_chain_240819")
    d = doc_of(p)
    assert d["status"] == "ok" and d["error"] is None
    assert d["_id"] == f"{SITE}:{os.path.abspath(p)}"
    assert (d["site"], d["name"], d["dir"]) == (SITE, "a.h5", str(tmp_path))
    assert d["spine_version"] == "0.17.1"
    assert d["spine_version_key"] == spine.semver_key("0.17.1")
    assert d["format"] == "spine_hdf5" and d["format_version"] == 2 and d["complete"] is True
    assert d["model"] == "full_chain" and d["dataset"] == "mpvmpr_v1" and d["config"] == "full_chain_240819"
    assert d["num_events"] == 7
    assert (d["run"], d["run_max"], d["subrun"], d["subrun_max"]) == (12, 12, 3, 3)
    assert (d["event_min"], d["event_max"]) == (100, 106)
    assert d["inputs"] and d["inputs_count"] == len(d["inputs"])
    assert d["provenance"]["model"] == "cfg" and d["provenance"]["num_events"] == "layout"
    assert isinstance(d["cfg"], dict)
    assert d["structure"]["count"] > 0 and any(i["path"] == "/events" for i in d["structure"]["items"])
    assert len(d["fingerprint"]) == 64
    assert d["size"] == os.path.getsize(p)


@pytest.mark.parametrize("version,fmt", [("0.10.3", None), ("0.13.0", None), ("0.17.1", 1)])
def test_spine_older_families(tmp_path, version, fmt):
    p = samples.write_spine_file(tmp_path / "a.h5", spine_version=version, format_version=fmt,
                                 n_events=5, run=40, subrun=1)
    d = doc_of(p)
    assert d["status"] == "ok"
    assert d["spine_version"] == version
    assert d["num_events"] == 5
    assert (d["run"], d["subrun"]) == (40, 1)
    assert d["model"] is not None


def test_incomplete_file_has_status(tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", complete=False)
    d = doc_of(p)
    assert d["status"] == "incomplete" and d["complete"] is False


def test_root_attributes_win_and_are_all_kept(tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", model="from_cfg",
                                 root_attrs={"model": "from_attrs", "beam.energy": 1.5, "run": np.uint32(77)})
    d = doc_of(p)
    assert d["model"] == "from_attrs" and d["provenance"]["model"] == "attrs"
    assert d["run"] == 77 and d["provenance"]["run"] == "attrs"
    assert d["attrs"]["beam%2Eenergy"] == 1.5
    assert d["attr_types"]["beam%2Eenergy"] == "double"


def test_non_spine_file(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.attrs["path"] = "clash with a top-level field"
        f.attrs["_id"] = 5
        f.attrs["$weird"] = np.array([1, 2, 3])
        f.attrs["nan"] = np.nan
        f.create_dataset("data/x", data=np.arange(10))
    d = doc_of(p)
    assert d["status"] == "ok"
    assert d["path"] == str(p)  # the attribute did not overwrite the document's path
    assert d["attrs"]["path"] == "clash with a top-level field"
    assert d["attrs"]["_id"] == 5 and d["attrs"]["%24weird"] == [1, 2, 3]
    assert math.isnan(d["attrs"]["nan"])
    assert d["spine_version"] is None and d["num_events"] is None and d["format"] is None
    assert {i["path"] for i in d["structure"]["items"]} == {"/data", "/data/x"}


def test_strange_attributes_stay_bson_safe_and_small(tmp_path):
    strange = samples.write_strange_files(tmp_path)
    for name, path in strange.items():
        if os.path.isdir(path) or not os.path.lexists(path):
            continue
        d = doc_of(path)
        assert len(bson.encode(d)) < ex.MAX_DOC_BYTES, name


def test_structure_is_bounded(tmp_path):
    p = tmp_path / "wide.h5"
    with h5py.File(p, "w") as f:
        for i in range(40):
            f.create_dataset(f"g{i}/d", data=[i])
        f.create_dataset("a/b/c/d/e/f/deep", data=[1])
    d = doc_of(p, limits=Limits(max_structure_items=30, max_structure_depth=3))
    assert d["structure"]["truncated"] is True
    assert len(d["structure"]["items"]) == 30


def test_fingerprint_same_for_copies_and_differs_on_change(tmp_path):
    a = samples.write_spine_file(tmp_path / "a.h5", seed=1)
    (tmp_path / "site2").mkdir()
    b = tmp_path / "site2" / "a.h5"
    b.write_bytes(a.read_bytes())
    c = samples.write_spine_file(tmp_path / "c.h5", seed=1, root_attrs={"x": 1})
    fa, fb, fc = (doc_of(p)["fingerprint"] for p in (a, b, c))
    assert fa == fb != fc


def test_checksum(tmp_path):
    import hashlib

    p = samples.write_spine_file(tmp_path / "a.h5")
    d = doc_of(p, checksum=True)
    assert d["checksum"] == {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    assert doc_of(p)["checksum"] is None


def test_path_patterns_fill_what_the_file_lacks(tmp_path):
    run_dir = tmp_path / "runs" / "20240819_101500_spine_2x2_fullchain" / "tasks" / "chunk_000" / "task_0" / "output"
    run_dir.mkdir(parents=True)
    p = run_dir / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["a"] = 1
    from spine_docs.settings import DEFAULT_PATH_PATTERNS

    d = doc_of(p, limits=Limits(path_patterns=tuple(DEFAULT_PATH_PATTERNS)))
    assert d["detector"] == "2x2" and d["config"] == "fullchain"
    assert d["provenance"]["detector"] == "path"
    custom = Limits(path_patterns=(r"/(?P<dataset>task_\d+)/",))
    assert doc_of(p, limits=custom)["dataset"] == "task_0"


def _bad(tmp_path):
    good = samples.write_spine_file(tmp_path / "good.h5")
    raw = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("not hdf5 at all\n")
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4000))
    (tmp_path / "dir.h5").mkdir()
    os.symlink(tmp_path / "nowhere.h5", tmp_path / "broken.h5")
    return {
        "truncated.h5": "truncated",
        "empty.h5": "empty file",
        "text.h5": "not an HDF5 file",
        "corrupt.h5": "HDF5",
        "dir.h5": "is a directory",
        "broken.h5": "broken symbolic link",
        "vanished.h5": "vanished",
    }


def test_bad_input_gives_error_documents(tmp_path):
    for name, reason in _bad(tmp_path).items():
        d = doc_of(tmp_path / name)
        assert d["status"] == "error", name
        assert reason.lower() in d["error"].lower(), (name, d["error"])
        assert d["path"] == str(tmp_path / name)


_EXTRACT_BOTH = """
import json, sys, bson
from spine_docs.extract import extract, extract_bson
doc = extract(sys.argv[1], site="testsite")
raw = bson.decode(extract_bson(sys.argv[1], site="testsite"))
print(json.dumps([{k: d[k] for k in ("path", "status", "error", "size")} for d in (doc, raw)]))
"""


def _extract_in_a_child(path):
    """extract() and extract_bson() of ``path`` in a child process, which is killed (and the
    test fails) should it block, e.g. opening a FIFO that has no writer."""
    try:
        out = subprocess.run([sys.executable, "-c", _EXTRACT_BOTH, str(path)], capture_output=True,
                             text=True, timeout=60)  # a bound against hanging, not a timing check
    except subprocess.TimeoutExpired:
        pytest.fail(f"extract blocked on {path}")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("kind", ["fifo", "char device", "symlink to a fifo"])
def test_non_regular_files_are_refused_by_extract_itself(tmp_path, kind):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    path = {"fifo": fifo, "char device": "/dev/null", "symlink to a fifo": tmp_path / "link.h5"}[kind]
    if kind == "symlink to a fifo":
        os.symlink(fifo, path)
    for d in _extract_in_a_child(path):
        assert d["status"] == "error" and d["error"] == "not a regular file", (kind, d["error"])
        assert d["path"] == os.path.abspath(path) and d["size"] == 0


def test_unreadable_file(tmp_path, monkeypatch):
    p = samples.write_spine_file(tmp_path / "a.h5")
    real = h5py.h5f.open

    def deny(name, *a, **k):  # root reads anything: refuse the way HDF5 does
        if os.fsdecode(name) == str(p):
            raise OSError(13, "Unable to synchronously open file (file open failed: "
                          "errno = 13, error message = 'Permission denied')")
        return real(name, *a, **k)

    monkeypatch.setattr(h5py.h5f, "open", deny)
    d = doc_of(p)
    assert d["status"] == "error" and "permission denied" in d["error"]


def test_unreadable_file_for_real(tmp_path):
    """Without h5py patched: a chmod 000 file, extracted by an ordinary user (as root too)."""
    from unprivileged import run_python

    p = samples.write_spine_file(tmp_path / "locked.h5")
    p.chmod(0)
    try:
        out = run_python(_EXTRACT_BOTH, p)
    finally:
        p.chmod(0o644)
    assert out.returncode == 0, out.stderr
    for d in json.loads(out.stdout):
        assert d["status"] == "error" and d["error"] == "permission denied (cannot read)"
        assert d["size"] == os.path.getsize(p)


def test_fit_shrinks_an_oversized_document():
    doc = ex.base_document(SITE, "/x.h5")
    doc["cfg"] = {"k%d" % i: "v" * 1000 for i in range(6000)}  # ~6 MB
    out = ex.fit(doc)
    assert len(bson.encode(out)) <= ex.MAX_DOC_BYTES
    assert out["cfg"]["summarized"] is True and "cfg" in out["shrunk"]


def test_module_prints_json(tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5")
    out = subprocess.run([sys.executable, "-m", "spine_docs.extract", str(p)], capture_output=True,
                         text=True, check=True, env=dict(os.environ, SPINE_DOCS_SITE="cli"))
    doc = json.loads(out.stdout)
    assert doc["path"] == str(p) and doc["site"] == "cli" and doc["status"] == "ok"


def test_only_sensible_attribute_values_are_promoted(tmp_path):
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        f.attrs["run"] = 1.5                       # not a run number
        f.attrs["subrun"] = np.array([4.0, 2.0])   # integral floats are
        f.attrs["model"] = np.void(b"\xff\xfe")    # opaque bytes name nothing
        f.attrs["dataset"] = "  mpv  "
    d = doc_of(p)
    assert d["run"] is None and (d["subrun"], d["subrun_max"]) == (2, 4)
    assert d["model"] is None and d["dataset"] == "mpv"


def test_the_layout_read_from_the_structure_walk_is_the_files_own(tmp_path):
    """extract._layout_from_structure answers run_ranges' layout question from the walk, or
    says it cannot; where it answers, it is what detect_format_version reads from the file
    (SPINE versions before and after 0.16, both layouts, strange and non-SPINE files)."""
    from spine_docs import samples, spine
    from spine_docs.extract import Limits, _layout_from_structure, open_hdf5, read_structure

    paths = [samples.write_spine_file(tmp_path / f"v{v}.h5", spine_version=v, format_version=fv, n_events=3)
             for v, fv in (("0.10.0", None), ("0.15.2", None), ("0.16.1", 1), ("0.17.1", 2), ("0.18.0", None))]
    paths += sorted(samples.write_strange_files(tmp_path / "strange"))
    answered = 0
    limits = Limits()
    for p in paths:
        try:
            f = open_hdf5(str(p))
        except Exception:
            continue  # not HDF5 at all: extract never walks it
        with f:
            walked = _layout_from_structure(read_structure(f, max_items=limits.max_structure_items,
                                                           max_depth=limits.max_structure_depth))
            if walked is not None:
                answered += 1
                assert walked == spine.detect_format_version(f), p
    assert answered >= 5  # the five SPINE files at least
