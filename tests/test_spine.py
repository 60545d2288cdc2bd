"""spine.py: what SPINE files, cfgs, sidecars and paths mean (files made by samples.py)."""

from __future__ import annotations

import errno
import json
import os
import random
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from spine_docs import samples, spine
from spine_docs.settings import DEFAULT_PATH_PATTERNS

PLAIN = (type(None), bool, int, float, str, list, dict)


def assert_plain(value):
    """Only plain Python values, recursively (no numpy scalars or arrays)."""
    assert isinstance(value, PLAIN), (type(value), value)
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain(v)


# (id, spine_version, format_version, expected layout)
FAMILIES = [
    ("v0.10-dataset-info", "0.10.2", None, 1),
    ("v0.13-group-info", "0.13.0", None, 1),
    ("v0.17-format1", "0.17.1", 1, 1),
    ("v0.17-format2", "0.17.1", 2, 2),
]


@pytest.fixture(params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family_file(request, tmp_path):
    _, version, fv, layout = request.param
    path = samples.write_spine_file(
        tmp_path / "f.h5", spine_version=version, format_version=fv, n_events=12, run=42,
        subrun=7, first_event=100, model="full_chain", dataset="mpvmpr_v1",
        config="icarus_full_chain_co_250625", detector="icarus", seed=5)
    return path, version, fv, layout


@pytest.fixture
def foreign_file(tmp_path):
    """An HDF5 file from another producer: root attributes, no /info, no run_info."""
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.attrs["producer"] = "other"
        f.attrs["run"] = 5
        f.create_dataset("data", data=np.arange(10))
        f.create_group("events").create_dataset("x", data=np.arange(3))
    return path


# ----------------------------------------------------------------------------- read_info

def test_read_info_per_family(family_file):
    path, version, fv, layout = family_file
    with h5py.File(path, "r") as f:
        info = spine.read_info(f)
    assert_plain(info)
    assert set(info) == {"version", "spine_version", "format", "format_version", "complete", "cfg_text"}
    assert info["version"] == version
    if version.startswith("0.10"):
        assert info["complete"] is None
    else:
        assert info["complete"] is True
    if version.startswith("0.17"):
        assert info["spine_version"] == version
        assert info["format"] == spine.SPINE_FORMAT_NAME
        assert info["format_version"] == fv
    else:
        assert info["spine_version"] is info["format"] is info["format_version"] is None
    assert "model:" in info["cfg_text"]


def test_read_info_dataset_vs_group(tmp_path):
    old = samples.write_spine_file(tmp_path / "old.h5", spine_version="0.10.2")
    new = samples.write_spine_file(tmp_path / "new.h5", spine_version="0.11.0", complete=False)
    with h5py.File(old) as f:
        assert isinstance(f["info"], h5py.Dataset)
    with h5py.File(new) as f:
        assert isinstance(f["info"], h5py.Group)
        assert spine.read_info(f)["complete"] is False


def test_read_info_foreign_file(foreign_file):
    with h5py.File(foreign_file) as f:
        assert spine.read_info(f) == dict.fromkeys(
            ["version", "spine_version", "format", "format_version", "complete", "cfg_text"])


def test_read_info_odd_types_become_plain(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("info")
        g.attrs["version"] = np.bytes_(b"0.9.1")
        g.attrs["spine_version"] = np.array(["0.9.1"], dtype=h5py.string_dtype())
        g.attrs["format_version"] = np.array([2], dtype=np.uint8)
        g.attrs["complete"] = np.bool_(False)
        g.attrs["format"] = np.int64(3)
        g.attrs["cfg"] = np.bytes_(b"model:\n  name: x\n")
    with h5py.File(path) as f:
        info = spine.read_info(f)
    assert_plain(info)
    assert info == {"version": "0.9.1", "spine_version": "0.9.1", "format": "3",
                    "format_version": 2, "complete": False, "cfg_text": "model:\n  name: x\n"}
    with h5py.File(path, "a") as f:
        f["info"].attrs["format_version"] = "two"
        f["info"].attrs["complete"] = np.int8(5)
        f["info"].attrs["version"] = np.arange(3)
    with h5py.File(path) as f:
        info = spine.read_info(f)
    assert info["format_version"] is None and info["complete"] is None and info["version"] is None


def test_read_info_tolerates_strange_files(tmp_path):
    files = samples.write_strange_files(tmp_path, big_elements=1000, wide=60, deep=5)
    for name in ("strange_attrs", "deep_wide", "odd_spine", "incomplete"):
        with h5py.File(files[name]) as f:
            info = spine.read_info(f)
            assert_plain(info)
            assert_plain(spine.run_ranges(f))
            assert_plain(spine.event_count(f))
    with h5py.File(files["incomplete"]) as f:
        assert spine.read_info(f)["complete"] is False
    with h5py.File(files["odd_spine"]) as f:
        info = spine.read_info(f)
        assert info["format_version"] is None and info["complete"] is None
        assert spine.parse_cfg(info["cfg_text"]) is None


# ----------------------------------------------------------------------------- layout, events, runs

def test_detect_format_event_count_run_ranges(family_file):
    path, version, fv, layout = family_file
    with h5py.File(path) as f:
        assert spine.detect_format_version(f) == layout
        assert spine.event_count(f) == 12
        info = spine.read_info(f)
        for given in (info["format_version"], None, layout):
            ranges = spine.run_ranges(f, given)
            assert_plain(ranges)
            assert ranges == {"run": 42, "run_max": 42, "subrun": 7, "subrun_max": 7,
                              "event_min": 100, "event_max": 111, "runs": [42]}


def test_foreign_file_layout(foreign_file):
    with h5py.File(foreign_file) as f:
        assert spine.detect_format_version(f) is None
        assert spine.event_count(f) is None
        assert spine.run_ranges(f, None) == {"run": None, "run_max": None, "subrun": None,
                                             "subrun_max": None, "event_min": None,
                                             "event_max": None, "runs": []}


def _run_table(n):
    table = np.zeros(n, [("run", "<i8"), ("subrun", "<i8"), ("event", "<i8"), ("other", "<f4", (8,))])
    table["run"] = np.repeat([7, 3, 9, 3], n // 4)
    table["subrun"] = np.arange(n) % 11
    table["event"] = np.arange(n) + 5
    table["run"][0] = -1           # RunInfo default: unknown
    table["event"][1] = -1
    return table


@pytest.mark.parametrize("where", ["run_info", "products/run_info/fixed", "run_info/fixed", "renamed"])
def test_run_ranges_locations_and_values(tmp_path, where):
    path = tmp_path / "r.h5"
    table = _run_table(40_000)
    with h5py.File(path, "w") as f:
        if where == "renamed":
            ds = f.create_group("products").create_group("my_run_info").create_dataset("fixed", data=table)
            ds.parent.attrs["class_name"] = "RunInfo"
        else:
            f.create_dataset(where, data=table)
    with h5py.File(path) as f:
        ranges = spine.run_ranges(f, 2 if "fixed" in where or where == "renamed" else 1)
        assert spine.event_count(f) == 40_000  # no `events`: the run-info table's rows
    assert_plain(ranges)
    assert ranges == {"run": 3, "run_max": 9, "subrun": 0, "subrun_max": 10,
                      "event_min": 5, "event_max": 40_004, "runs": [3, 7, 9]}


def test_run_ranges_empty_and_odd_columns(tmp_path):
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("run_info", data=np.zeros(0, [("run", "<i8"), ("subrun", "<i8"), ("event", "<i8")]))
        f.create_dataset("events", data=np.zeros(0, [("run_info", h5py.regionref_dtype)]))
    with h5py.File(path) as f:
        assert spine.event_count(f) == 0
        assert spine.run_ranges(f)["run"] is None
    with h5py.File(path, "w") as f:
        t = np.zeros(3, [("run", "<u8"), ("subrun", "<f8"), ("event", "S3")])
        t["run"] = [2 ** 64 - 1, 4, 5]
        t["subrun"] = [np.nan, np.inf, 2.0]
        f.create_dataset("run_info", data=t)
    with h5py.File(path) as f:
        ranges = spine.run_ranges(f)
    assert_plain(ranges)
    assert (ranges["run"], ranges["run_max"], ranges["subrun"], ranges["subrun_max"]) == (4, 5, 2, 2)
    assert ranges["event_min"] is None


def test_run_ranges_bounds_distinct_runs(tmp_path):
    path = tmp_path / "many.h5"
    n = spine.MAX_RUNS + 500
    t = np.zeros(n, [("run", "<i8"), ("subrun", "<i8"), ("event", "<i8")])
    t["run"] = np.arange(n)[::-1]
    with h5py.File(path, "w") as f:
        f.create_dataset("run_info", data=t)
    with h5py.File(path) as f:
        ranges = spine.run_ranges(f)
    assert ranges["run_max"] == n - 1
    assert ranges["runs"] == list(range(spine.MAX_RUNS))


# ----------------------------------------------------------------------------- cfg

def test_cfg_from_every_family(family_file):
    path, *_ = family_file
    with h5py.File(path) as f:
        cfg = spine.parse_cfg(spine.read_info(f)["cfg_text"])
    assert_plain(cfg)
    facts = spine.cfg_facts(cfg)
    assert_plain(facts)
    assert facts == {
        "model": "full_chain", "dataset": "mpvmpr_v1", "config": "icarus_full_chain_co_250625",
        "inputs": ["/sdf/data/neutrino/icarus/mpvmpr_v1/larcv/mpvmpr_v1_000005.root"]}


def test_parse_cfg_reads_what_yaml_dump_writes():
    text = ("a: !!python/tuple [1, 2]\n"
            "b: 2024-07-19\n"
            "4: 50\n"
            "null: x\n"
            "true: y\n"
            "big: 123456789012345678901234567890\n"
            "c: !!python/object/apply:numpy.core.multiarray.scalar [1]\n"
            "d: !custom {k: v}\n")
    cfg = spine.parse_cfg(text)
    assert_plain(cfg)
    assert cfg == {"a": [1, 2], "b": "2024-07-19", "4": 50, "null": "x", "true": "y",
                   "big": "123456789012345678901234567890", "c": [1], "d": {"k": "v"}}
    assert spine.parse_cfg(text.encode()) == cfg


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), (None, "empty"), ("- 1\n- 2\n", "not a YAML mapping"),
    ("just a string", "not a YAML mapping"), ("a: [1,\n", "not valid YAML"),
    ("a: b: c\n", "not valid YAML"),
])
def test_parse_cfg_rejects(text, reason):
    cfg, why = spine.parse_cfg_checked(text)
    assert cfg is None and reason in why
    assert spine.parse_cfg(text) is None


def test_parse_cfg_refuses_alias_bombs():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    cfg, why = spine.parse_cfg_checked("\n".join(lines) + "\n")
    assert cfg is None and "too large" in why


def test_cfg_facts_rules():
    assert spine.cfg_facts(None) == {"model": None, "dataset": None, "config": None, "inputs": []}
    cfg = {"model": {"name": "graph_spice"},
           "io": {"reader": {"file_keys": "/d/icarus/bnb_v1/output/*.h5"},
                  "writer": {"suffix": "spine"}}}
    facts = spine.cfg_facts(cfg)
    assert facts == {"model": "graph_spice", "dataset": "bnb_v1", "config": None,
                     "inputs": ["/d/icarus/bnb_v1/output/*.h5"]}
    cfg = {"io": {"loader": {"dataset": {"file_list": ["/x/ds_a/f1.root", "/x/ds_a/f1.root"],
                                         "file_keys": ["/x/ds_b/f2.root"]}},
                  "writer": {"suffix": "cfg_240101"}}}
    facts = spine.cfg_facts(cfg)
    assert facts["model"] is None                      # analysis-only: no model block
    assert facts["config"] == "cfg_240101"
    assert facts["inputs"] == ["/x/ds_a/f1.root", "/x/ds_b/f2.root"]
    assert facts["dataset"] is None                    # inputs disagree
    assert spine.cfg_facts({"model": "uresnet", "io": 3})["model"] == "uresnet"


@pytest.mark.parametrize("inputs, expected", [
    (["/sdf/data/neutrino/icarus/mpvmpr_v1/larcv/000/mpvmpr_v1_0001.root"], "mpvmpr_v1"),
    (["root://fndca1.fnal.gov:1094//pnfs/fnal.gov/usr/icarus/bnb_run2/files/a.root"], "bnb_run2"),
    (["/data/bnb_cosmics/v2/*.root", "/data/bnb_cosmics/v3/b.root"], "bnb_cosmics"),
    (["mpvmpr_v1_000123.root"], "mpvmpr_v1"),
    (["/data/files/numi_000123_larcv.root"], "numi"),
    (["/a/x/f.root", "/a/y/f.root"], None),
    ([], None),
    ([None, 3], None),
    (["*.root"], None),
    (["/w/ds_c/a.root", "/w/jobs/files_chunk_0_task_1.txt"], "ds_c"),
    (["/p/runs/20250101_120000_spine_sbnd_sbnd_cfg_1/tasks/chunk_000/task_3/output/"
      "bnb_cosmics_000042_sbnd_cfg_1.h5"], "bnb_cosmics"),
])
def test_dataset_from_inputs(inputs, expected):
    assert spine.dataset_from_inputs(inputs) == expected


# ----------------------------------------------------------------------------- sidecars / job

def _prod_file(root: Path, *, attempt: bool = False) -> tuple[Path, Path]:
    run_dir = root / "runs" / "20250101_120000_spine_icarus_icarus_full_chain_co_250625"
    if attempt:
        base = run_dir / "attempts" / "20250101_120001_000000"
        out = base / "tasks" / "000_1" / "output"
    else:
        base = run_dir
        out = base / "tasks" / "chunk_000" / "task_1" / "output"
    out.mkdir(parents=True)
    f = samples.write_spine_file(out / "in_000001_icarus_full_chain_co_250625.h5")
    job = base / spine.JOB_METADATA_NAME
    job.write_text(json.dumps({"spine_prod_version": "1.4.0", "detector": "icarus",
                               "config": "/tmp/composite_x.cfg",
                               "original_config": "infer/icarus/icarus_full_chain_co_250625.cfg",
                               "job_name": "spine_icarus_icarus_full_chain_co_250625",
                               "submitted": "2025-01-01T12:00:00"}))
    return f, job


@pytest.mark.parametrize("attempt", [False, True], ids=["runs-layout", "attempts-layout"])
def test_find_job_metadata(tmp_path, attempt):
    f, job = _prod_file(tmp_path, attempt=attempt)
    assert spine.find_job_metadata(f) == job


def test_find_job_metadata_stops_at_run_dir_and_depth(tmp_path):
    f, job = _prod_file(tmp_path)
    (tmp_path / spine.JOB_METADATA_NAME).write_text("{}")        # above runs/: not this production's
    (tmp_path / "runs" / spine.JOB_METADATA_NAME).write_text("{}")
    job.unlink()
    assert spine.find_job_metadata(f) is None
    deep = tmp_path / "x" / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    (tmp_path / "x" / spine.JOB_METADATA_NAME).write_text("{}")
    assert spine.find_job_metadata(deep / "file.h5") is None           # 7 levels up: too far
    assert spine.find_job_metadata(deep.parent / "file.h5") == tmp_path / "x" / spine.JOB_METADATA_NAME


def test_find_job_metadata_memo_answers_as_without_and_climbs_less(tmp_path, monkeypatch):
    f, job = _prod_file(tmp_path)
    deep = tmp_path / "x" / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    (tmp_path / "x" / spine.JOB_METADATA_NAME).write_text("{}")
    run_dir = f.parent.parent.parent.parent.parent
    files = [f, deep / "file.h5", deep.parent / "file.h5", deep.parent.parent / "g.h5",
             tmp_path / "elsewhere" / "h.h5"]
    for k in range(2, 6):
        files.append(run_dir / "tasks" / "chunk_000" / f"task_{k}" / "output" / "o.h5")
    expected = [spine.find_job_metadata(p) for p in files]
    memo: dict = {}
    looked = []
    real = spine._is_file  # what the climb stats each directory with
    monkeypatch.setattr(spine, "_is_file", lambda p: looked.append(p) or real(p))
    assert [spine.find_job_metadata(p, memo=memo) for p in files] == expected
    assert [spine.find_job_metadata(p, memo=memo) for p in reversed(files)] == expected[::-1]
    # each sibling task stops where the first one's climb went through (its chunk directory)
    sibling_looks = [p for p in looked if "task_5" in str(p)]
    assert len(sibling_looks) == 2  # task_5/output and task_5, then the memo


def test_read_sidecars_and_cache(tmp_path):
    f, job = _prod_file(tmp_path)
    side = Path(str(f) + ".json")
    side.write_text(json.dumps({"application": {"name": "spine", "version": "v0.17.1"},
                                "runs": [[5, 2, "physics"], [6, 1, "physics"]],
                                "parents": [{"file_name": "in_000001.root"}, "in_000002.root"],
                                "first_event": 10, "last_event": 19, "event_count": 10,
                                "data_tier": "spine-reco", "huge": 2 ** 70}))
    cache: dict = {}
    sidecar, job_doc = spine.read_sidecars(f, job_cache=cache)
    assert_plain(sidecar)
    assert_plain(job_doc)
    assert sidecar["huge"] == str(2 ** 70)                # out of BSON int range
    assert job_doc["spine_prod_version"] == "1.4.0"
    job_doc["detector"] = "mutated"
    job.write_text(json.dumps({"spine_prod_version": "9.9.9"}))
    _, again = spine.read_sidecars(f, job_cache=cache)    # cached per directory and job file
    assert again["spine_prod_version"] == "1.4.0" and again["detector"] == "icarus"
    _, fresh = spine.read_sidecars(f)
    assert fresh == {"spine_prod_version": "9.9.9"}

    facts = spine.sidecar_facts(sidecar, job_doc | {"detector": "icarus"})
    assert_plain(facts)
    assert facts["spine_version"] == "v0.17.1"
    assert (facts["run"], facts["run_max"], facts["subrun"], facts["subrun_max"]) == (5, 6, 1, 2)
    assert (facts["event_min"], facts["event_max"], facts["num_events"]) == (10, 19, 10)
    assert facts["inputs"] == ["in_000001.root", "in_000002.root"]
    assert facts["prod_version"] == "1.4.0" and facts["detector"] == "icarus"
    assert facts["config"] == "icarus_full_chain_co_250625"     # original_config's stem
    assert facts["data_tier"] == "spine-reco"
    assert facts["provenance"]["run"] == "sidecar" and facts["provenance"]["config"] == "job"


def test_read_sidecars_problems(tmp_path):
    f = samples.write_spine_file(tmp_path / "a.h5")
    assert spine.read_sidecars(f) == (None, None)
    errors: list[str] = []
    Path(str(f) + ".json").write_text("{not json")
    assert spine.read_sidecars(f, errors=errors) == (None, None)
    assert len(errors) == 1 and "not JSON" in errors[0]
    Path(str(f) + ".json").write_text("[1, 2]")
    errors.clear()
    assert spine.read_sidecars(f, errors=errors)[0] is None and "not a JSON object" in errors[0]
    Path(str(f) + ".json").write_bytes(b"\xff\xfe{")
    assert spine.load_json_checked(str(f) + ".json")[0] is None
    (tmp_path / "dir.h5.json").mkdir()
    assert spine.load_json_checked(tmp_path / "dir.h5.json")[1].endswith("is a directory")


def test_sidecar_facts_edges():
    empty = spine.sidecar_facts(None, None)
    assert empty["inputs"] == [] and empty["provenance"] == {}
    assert all(v is None for k, v in empty.items() if k not in ("inputs", "provenance"))
    facts = spine.sidecar_facts({"application": {"name": "spine-prod", "version": "1.2"},
                                 "runs": "junk", "first_event": True, "Dataset.Tag": "ds1"},
                                {"config": "a/b/my_cfg.yaml", "detector": 5})
    assert facts["prod_version"] == "1.2" and facts["spine_version"] is None
    assert facts["event_min"] is None and facts["run"] is None
    assert facts["dataset"] == "ds1" and facts["config"] == "my_cfg"
    assert facts["detector"] == "5"


# ----------------------------------------------------------------------------- paths

def test_path_facts_default_patterns():
    path = ("/sdf/prod/runs/20250101_120000_spine_icarus_icarus_full_chain_co_250625/tasks/"
            "chunk_000/task_1/output/x_icarus_full_chain_co_250625.h5")
    facts = spine.path_facts(path, DEFAULT_PATH_PATTERNS)
    assert facts == {"prod_date": "20250101_120000", "detector": "icarus",
                     "config": "icarus_full_chain_co_250625"}
    facts = spine.path_facts("/data/v0.17.1/run_000123/subrun_4/f.h5", DEFAULT_PATH_PATTERNS)
    assert facts == {"run": 123, "subrun": 4, "spine_version": "0.17.1"}
    assert type(facts["run"]) is int


def test_path_facts_order_and_bad_patterns():
    patterns = [r"(?P<run>x", r"/a(?P<run>\d+)", r"/b(?P<run>\d+)_(?P<dataset>\w+)", r"(?P<model>)"]
    assert spine.path_facts("/a12/b34_ds/", patterns) == {"run": 12, "dataset": "ds"}
    assert spine.path_facts(Path("/nothing"), patterns) == {}
    with pytest.raises(ValueError, match="invalid path pattern"):
        spine.compile_patterns(patterns)
    compiled = spine.compile_patterns(patterns[1:])
    assert spine.path_facts("/a5", compiled) == {"run": 5}


# ----------------------------------------------------------------------------- versions

ORDERED = ["0.1", "v0.2.0", "0.4.9", "0.5.0.dev3", "0.5.0a1", "0.5.0b2", "0.5.0rc1.dev2",
           "0.5.0rc1", "0.5.0-rc.2", "0.5.0rc10", "0.5.0.post1.dev1", "0.5.0.post1", "0.5.1",
           "0.9.10", "0.10.0", "0.16.0rc1", "0.16.0", "0.17.1", "1.0.0", "10.0"]


def test_semver_key_examples():
    assert spine.semver_key("0.5") == "000000.000005.000000~"
    assert spine.semver_key("0.5") == spine.semver_key("v0.5.0") == spine.semver_key("0.5.0+local")
    assert spine.semver_key("0.5.0rc1") < spine.semver_key("0.5")
    assert spine.semver_key("0.5.0.dev3") < spine.semver_key("0.5.0rc1")
    for junk in (None, "", "abc", "1.2.3.4", "v", "0.5.x", 5, 0.5, "1" * 300, "1.10000000.0"):
        assert spine.semver_key(junk) is None, junk
    assert spine.parse_version("v0.17.1rc2") == (0, 17, 1)


def test_semver_ordering_over_shuffled_list():
    for seed in range(5):
        shuffled = ORDERED[:]
        random.Random(seed).shuffle(shuffled)
        assert sorted(shuffled, key=spine.semver_key) == ORDERED
    keys = [spine.semver_key(v) for v in ORDERED]
    assert all(re.fullmatch(r"[0-9.~pa-d-]+", k) for k in keys)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_semver_agrees_with_packaging():
    version = pytest.importorskip("packaging.version")
    pep440 = [v for v in ORDERED if "-rc." not in v]
    for a in pep440:
        for b in pep440:
            ka, kb = spine.semver_key(a), spine.semver_key(b)
            assert (ka < kb) == (version.Version(a) < version.Version(b)), (a, b)


# Pre-release spellings, each group equal, the groups in this order (written by hand).
PRE_RELEASE_ORDER = [
    ["0.4.9"],
    ["0.5.0.dev0", "0.5.0.dev", "0.5.0dev0"],
    ["0.5.0.dev1", "0.5.0-dev1", "0.5.0dev1"],
    ["0.5.0a0", "0.5.0a", "0.5.0alpha", "0.5.0-alpha.0"],
    ["0.5.0a1", "0.5.0alpha1", "0.5.0-alpha.1", "0.5.0.a1", "0.5.0_a1"],
    ["0.5.0a2", "0.5.0alpha2"],
    ["0.5.0b0", "0.5.0b", "0.5.0beta"],
    ["0.5.0b1", "0.5.0beta1", "0.5.0-beta.1"],
    ["0.5.0rc0", "0.5.0rc", "0.5.0c", "0.5.0-rc", "0.5.0pre", "0.5.0preview", "0.5.0c0"],
    ["0.5.0rc1.dev1"],
    ["0.5.0rc1", "0.5.0c1", "0.5.0-rc.1", "0.5.0pre1", "0.5.0preview1", "0.5.0-c1"],
    ["0.5.0rc2", "0.5.0c2"],
    ["0.5.0", "0.5", "v0.5.0", "0.5.0+build.7"],
    ["0.5.0.post1", "0.5.0-1-gabc123"],
    ["0.5.1a1"],
    ["0.5.1"],
]


def test_pre_release_spellings_sort_as_written_by_hand():
    keys = [[spine.semver_key(v) for v in group] for group in PRE_RELEASE_ORDER]
    for group, ks in zip(PRE_RELEASE_ORDER, keys):
        assert None not in ks, group
        assert len(set(ks)) == 1, dict(zip(group, ks))  # spellings of one version are equal
    firsts = [ks[0] for ks in keys]
    assert all(a < b for a, b in zip(firsts, firsts[1:])), \
        [g[0] for g in PRE_RELEASE_ORDER]
    flat = [v for group in PRE_RELEASE_ORDER for v in group]
    for seed in range(3):
        shuffled = flat[:]
        random.Random(seed).shuffle(shuffled)
        ranks = [next(i for i, g in enumerate(PRE_RELEASE_ORDER) if v in g)
                 for v in sorted(shuffled, key=spine.semver_key)]
        assert ranks == sorted(ranks)


def test_job_inputs_from_the_jobs_source_list(tmp_path):
    run = tmp_path / "runs" / "20250101_000000_spine_sbnd_reco_v2"
    out = run / "tasks" / "chunk_000" / "task_1" / "output"
    out.mkdir(parents=True)
    listed = tmp_path / "lists" / "files.txt"
    listed.parent.mkdir()
    listed.write_text("/raw/x_1.root\n/raw/x_2.root\n/raw/x_2.h5\n")
    job = {"config": "infer/sbnd/reco_v2.cfg",                       # no output_suffix: the config's stem
           "command": f"./submit.py -c infer/sbnd/reco_v2.cfg --source-list={listed}"}
    (run / "job_metadata.json").write_text(json.dumps(job))
    assert spine.job_inputs(out / "x_2_reco_v2.h5", job) == ["/raw/x_2.root", "/raw/x_2.h5"]
    assert spine.job_inputs(out / "x_3_reco_v2.h5", job) == []           # listed nowhere
    assert spine.job_inputs(out / "x_1_other.h5", job) == []             # not this job's suffix
    assert spine.job_inputs(out / "x_1_reco_v2.h5", {**job, "command": "./submit.py -s '/raw/*.root'"}) == []
    assert spine.job_inputs(out / "x_1_reco_v2.h5", {**job, "output_suffix": "reco_v2",
                                                     "command": f"./submit.py -S '{listed}'"}) == ["/raw/x_1.root"]
    assert spine.job_inputs(out / "x_1_reco_v2.h5", None) == []
    cache: dict = {}
    assert spine.job_inputs(out / "x_1_reco_v2.h5", job, cache) == ["/raw/x_1.root"]
    listed.unlink()                                                      # read once per run: remembered
    assert spine.job_inputs(out / "x_2_reco_v2.h5", job, cache) == ["/raw/x_2.root", "/raw/x_2.h5"]


def test_find_job_metadata_stops_where_a_directory_cannot_be_looked_into(tmp_path, monkeypatch):
    """A directory it may not stat (EACCES) ends the climb with no answer, as Path.is_file
    would; a missing one (ENOENT) only means: go up."""
    f, job = _prod_file(tmp_path)
    assert spine.find_job_metadata(f) == job
    real = os.stat

    def denied(path, *a, **k):
        if str(path).startswith(str(f.parent)) and str(path).endswith(spine.JOB_METADATA_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "stat", denied)
    assert spine.find_job_metadata(f) is None
