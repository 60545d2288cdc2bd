"""samples.py: realistic layouts per SPINE release, deterministic trees, strange files."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from spine_docs import samples, spine

from unprivileged import run_python


def _tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (JSON with the root path taken out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".json":
                data = data.replace(str(root).encode(), b"<ROOT>")
            out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


# ----------------------------------------------------------------------------- one file

@pytest.mark.parametrize("version, fv, info_kind, layout", [
    ("0.1.0", None, "dataset", 1),
    ("0.10.2", 2, "dataset", 1),        # format_version ignored before 0.16
    ("0.11.0", None, "group", 1),
    ("0.15.3", None, "group", 1),
    ("0.16.0", None, "group", 1),       # >= 0.16 always records a format_version
    ("0.16.0", 2, "group", 2),
    ("0.17.1", 1, "group", 1),
    ("0.17.1", 2, "group", 2),
])
def test_layout_per_release(tmp_path, version, fv, info_kind, layout):
    p = samples.write_spine_file(tmp_path / "f.h5", spine_version=version, format_version=fv,
                                 n_events=9, run=3, subrun=2, first_event=50)
    with h5py.File(p) as f:
        assert list(f.attrs) == []                                # SPINE writes no root attributes
        info = f["info"]
        assert isinstance(info, h5py.Dataset if info_kind == "dataset" else h5py.Group)
        attrs = set(info.attrs)
        expected = {"version", "cfg"}
        if info_kind == "group":
            expected.add("complete")
        if spine.parse_version(version) >= (0, 16, 0):
            expected |= {"spine_version", "format", "format_version"}
            assert info.attrs["format_version"] == layout
            assert info.attrs["format"] == "spine_hdf5"
        assert attrs == expected
        if info_kind == "dataset":
            assert info.shape == (0,)
        events = f["events"]
        assert events.shape == (9,)
        if layout == 1:
            assert events.dtype.names == ("index", "run_info", "points", "reco_particles")
            assert "products" not in f
            assert f["run_info"].attrs["class_name"] == "RunInfo"
            assert f["reco_particles"].attrs["scalar"] == np.False_
            # region references really select each event's rows
            ref = events[4]["run_info"]
            assert f["run_info"][ref]["event"].tolist() == [54]
            ref = events[4]["points"]
            pts = f["points"][ref]
            assert pts.ndim == 2 and pts.shape[1] == 3 and len(pts) >= 2
        else:
            assert events.dtype == np.int64 and events[:].tolist() == list(range(9))
            run_info = f["products/run_info"]
            assert run_info.attrs["kind"] == "objects" and run_info.attrs["class_name"] == "RunInfo"
            assert run_info["event_offsets"][:].tolist() == list(range(10))
            assert run_info["fixed"]["event"].tolist() == list(range(50, 59))
            parts = f["products/reco_particles"]
            offsets = parts["event_offsets"][:]
            assert offsets[0] == 0 and offsets[-1] == len(parts["fixed"])
            var = parts["fixed"]["_var_offsets_0"]
            if len(var):
                assert var[-1][1] == len(parts["variables/pool_0/values"])
        assert spine.run_ranges(f)["event_max"] == 58


def test_options_cfg_and_root_attrs(tmp_path):
    p = samples.write_spine_file(tmp_path / "a.h5", model=None, dataset=None, config=None,
                                 root_attrs={"producer": "merge", "n": 3}, complete=False,
                                 inputs=["/x/ds_q/in.root"])
    with h5py.File(p) as f:
        assert dict(f.attrs) == {"producer": "merge", "n": 3}
        info = spine.read_info(f)
        assert info["complete"] is False
        cfg = spine.parse_cfg(info["cfg_text"])
    assert "model" not in cfg
    assert spine.cfg_facts(cfg) == {"model": None, "dataset": "ds_q", "config": None,
                                    "inputs": ["/x/ds_q/in.root"]}
    assert cfg["io"]["writer"]["format_version"] == 2
    p = samples.write_spine_file(tmp_path / "b.h5", cfg=False, spine_version="0.10.0", complete=False)
    with h5py.File(p) as f:
        assert set(f["info"].attrs) == {"version"}               # no `complete` before 0.11


def test_write_spine_file_is_deterministic(tmp_path):
    a = samples.write_spine_file(tmp_path / "a.h5", seed=11, format_version=1)
    b = samples.write_spine_file(tmp_path / "b.h5", seed=11, format_version=1)
    c = samples.write_spine_file(tmp_path / "c.h5", seed=12, format_version=1)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_spine_cfg_looks_like_spine_prod():
    cfg = samples.spine_cfg(model="full_chain", config="2x2_full_chain_240819",
                            inputs=["/a/b.root"], detector="2x2")
    assert cfg["io"]["writer"]["suffix"] == "2x2_full_chain_240819"
    assert cfg["io"]["loader"]["dataset"]["file_keys"] == ["/a/b.root"]
    assert cfg["model"]["name"] == "full_chain" and cfg["geo"]["detector"] == "2x2"


# ----------------------------------------------------------------------------- production tree

def test_prod_tree_is_deterministic(tmp_path):
    a = samples.write_prod_tree(tmp_path / "a", 40, seed=3)
    b = samples.write_prod_tree(tmp_path / "b", 40, seed=3)
    c = samples.write_prod_tree(tmp_path / "c", 40, seed=4)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    digest_a = _tree_digest(tmp_path / "a")
    assert digest_a == _tree_digest(tmp_path / "b")
    assert digest_a != _tree_digest(tmp_path / "c")


def test_prod_tree_content(tmp_path):
    root = tmp_path / "prod"
    paths = samples.write_prod_tree(root, 150, seed=0, n_runs=18, incomplete_fraction=0.1,
                                    foreign_fraction=0.1)
    assert len(paths) == len(set(paths)) == 150
    assert all(p.is_file() and p.suffix == ".h5" for p in paths)

    run_dirs = sorted((root / "runs").iterdir())
    assert len(run_dirs) == 18
    detectors = collections.Counter()
    for d in run_dirs:
        m = spine.RUN_DIR_RE.match(d.name)
        assert m, d.name
        job = json.loads((d / "job_metadata.json").read_text())
        assert job["detector"] == m["detector"] and job["output_suffix"] == m["config"]
        assert job["spine_prod_version"] and job["num_files"] >= 1
        detectors[m["detector"]] += 1
    assert len(detectors) == 3

    versions, statuses, layouts, sidecars, foreign, merged = set(), collections.Counter(), set(), 0, 0, 0
    for p in paths:
        with h5py.File(p) as f:
            info = spine.read_info(f)
            if info["cfg_text"] is None:
                foreign += 1
                assert f.attrs["producer"] == "larcv2h5" and "info" not in f
                assert "/other/" in str(p)
                continue
            merged += "merged_by" in f.attrs
            versions.add(info["version"])
            statuses[info["complete"]] += 1
            layouts.add(spine.detect_format_version(f))
            facts = spine.cfg_facts(spine.parse_cfg(info["cfg_text"]))
            assert spine.event_count(f) >= 5
            assert spine.run_ranges(f)["run"] is not None
        job_path = spine.find_job_metadata(p)
        assert job_path is not None and job_path.parent.parent.name == "runs"
        config = spine.RUN_DIR_RE.match(job_path.parent.name)["config"]
        assert p.name.endswith(f"_{config}.h5") and facts["config"] == config
        assert facts["dataset"] and p.name.startswith(facts["dataset"])
        assert "/tasks/chunk_000/task_" in str(p) and p.parent.name == "output"
        side = Path(str(p) + ".json")
        if side.exists():
            sidecars += 1
            sc = json.loads(side.read_text())
            assert sc["application"]["version"] == "v" + info["version"]
    assert versions == set(samples.SPINE_VERSIONS)          # 0.1 .. 0.17 all present
    assert statuses[False] >= 1 and statuses[True] > statuses[False]
    assert layouts == {1, 2}
    assert 0 < sidecars < len(paths) - foreign
    assert foreign >= 1 and merged >= 1


def test_prod_tree_small_and_without_sidecars(tmp_path):
    paths = samples.write_prod_tree(tmp_path, 5, seed=9, sidecars=False, foreign_fraction=0)
    assert len(paths) == 5
    assert not list(tmp_path.rglob("*.h5.json"))
    assert len(list(tmp_path.rglob("job_metadata.json"))) == 3


# ----------------------------------------------------------------------------- strange files

@pytest.fixture(scope="module")
def strange(tmp_path_factory):
    return samples.write_strange_files(tmp_path_factory.mktemp("strange"))


def _opens(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            list(f.keys())
        return True
    except (OSError, KeyError):
        return False


def test_strange_files_are_what_they_claim(strange):
    assert set(strange) == {"corrupt", "truncated", "empty", "not_hdf5", "strange_attrs",
                            "deep_wide", "incomplete", "odd_spine", "broken_symlink", "directory"}
    corrupt = strange["corrupt"].read_bytes()
    assert corrupt.startswith(b"\x89HDF\r\n\x1a\n") and len(corrupt) > 1000
    assert h5py.is_hdf5(strange["corrupt"]) and not _opens(strange["corrupt"])
    assert h5py.is_hdf5(strange["truncated"]) and not _opens(strange["truncated"])
    assert strange["empty"].stat().st_size == 0 and not _opens(strange["empty"])
    assert not h5py.is_hdf5(strange["not_hdf5"]) and not _opens(strange["not_hdf5"])
    assert strange["broken_symlink"].is_symlink() and not strange["broken_symlink"].exists()
    assert strange["directory"].is_dir() and strange["directory"].name.endswith(".h5")
    for name in ("strange_attrs", "deep_wide", "incomplete", "odd_spine"):
        assert _opens(strange[name]), name
    with h5py.File(strange["incomplete"]) as f:
        assert f["info"].attrs["complete"] == np.False_


def test_truncated_is_half_of_a_valid_file(tmp_path, strange):
    full = samples.write_spine_file(tmp_path / "full.h5", n_events=200, seed=7)
    assert strange["truncated"].read_bytes() == full.read_bytes()[: full.stat().st_size // 2]


def test_strange_attributes(strange):
    with h5py.File(strange["strange_attrs"]) as f:
        a = f.attrs
        assert a["uint64_max"] == np.uint64(2 ** 64 - 1) and a["uint64_max"].dtype == np.uint64
        assert np.isnan(a["nan"]) and a["inf"] == np.inf and a["neg_inf"] == -np.inf
        assert a["bytes_non_utf8"] == b"\xff\xfe\xfdabc"
        with pytest.raises(UnicodeDecodeError):
            bytes(a["bytes_non_utf8"]).decode("utf-8")
        assert isinstance(a["long_string"], str) and len(a["long_string"]) == 1_000_000
        assert a["big_array"].shape == (10_000_000,)
        assert f["big_dataset"].shape == (10_000_000,)
        assert f["big_dataset"].compression == "gzip" and f["big_dataset"].chunks
        assert f["big_dataset"].id.get_storage_size() < 1_000_000
        assert a["compound"].dtype.names == ("a", "b", "c")
        assert h5py.check_enum_dtype(a.get_id("enum").dtype) == {"RED": 0, "GREEN": 1, "BLUE": 2}
        assert isinstance(a["object_reference"], h5py.Reference)
        assert f[a["object_reference"]].name == "/target"
        assert isinstance(a["region_reference"], h5py.RegionReference)
        assert f["target"][a["region_reference"]].tolist() == [2, 3, 4]
        assert isinstance(a["empty_null"], h5py.Empty)
        assert a["zero_length"].shape == (0,)
        for name in samples.STRANGE_ATTR_NAMES:
            assert name in a, name
        for name in ("a.b.c", "$where", "path", "_id", "site", "能量"):
            assert name in a


def test_deep_wide_and_odd_spine(strange):
    with h5py.File(strange["deep_wide"]) as f:
        datasets = []
        f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        assert len(datasets) >= 3000
        deepest = max(datasets, key=lambda n: n.count("/"))
        assert deepest.count("/") >= 40
    with h5py.File(strange["odd_spine"]) as f:
        assert isinstance(f.get("events", getlink=True), h5py.ExternalLink)
        assert f.get("events") is None              # its target file does not exist
        with pytest.raises(KeyError):
            f["products"]                           # dangling soft link
        assert f["info"].attrs["format_version"] == "two"


_OPENS = """
import sys, h5py
try:
    with h5py.File(sys.argv[1], "r") as f:
        list(f.keys())
    print("opens")
except OSError as exc:
    print("refused:", exc)
"""


def _opens_as_a_user(path: Path) -> bool:
    """Whether h5py opens the file for an ordinary user (also when the tests run as root)."""
    out = run_python(_OPENS, path)
    assert out.returncode == 0, out.stderr
    return out.stdout.startswith("opens")


def test_unreadable_file(tmp_path):
    p = samples.write_spine_file(tmp_path / "locked.h5")
    p.chmod(0)
    try:
        assert not _opens_as_a_user(p)
    finally:
        p.chmod(0o644)
    assert _opens_as_a_user(p)


def test_strange_files_can_be_rewritten(tmp_path):
    first = samples.write_strange_files(tmp_path, big_elements=100, wide=60, deep=3)
    again = samples.write_strange_files(tmp_path, big_elements=100, wide=60, deep=3)
    assert first == again
    shutil.rmtree(tmp_path / "x.h5")
