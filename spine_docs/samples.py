"""SPINE-like sample files for the demo, the tests and the benchmarks.

* :func:`write_spine_file`: one file with the layout the given SPINE release writes
  (``/info`` dataset before 0.11, group with ``complete`` from 0.11, ``spine_version`` /
  ``format`` / ``format_version`` from 0.16; layout 1 region references or layout 2 offsets),
  a realistic ``cfg`` and a few data products, among them ``run_info``. Fast (a few ms).
* :func:`write_prod_tree`: a spine-prod production tree (``runs/<stamp>_spine_<det>_<cfg>/
  tasks/chunk_NNN/task_K/output/<input_stem>_<cfg>.h5`` with ``job_metadata.json``, optional
  ``<file>.h5.json`` sidecars, and a few files from another producer). Deterministic.
* :func:`write_strange_files`: files a catalog must survive (corrupt, truncated, empty, not
  HDF5, every odd attribute, thousands of datasets, incomplete, broken link, directory).

Everything is deterministic for a given seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import functools
import json
import os
import random
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np
import yaml

from .spine import SPINE_FORMAT_NAME, parse_version

__all__ = [
    "SPINE_VERSIONS", "DETECTORS", "write_spine_file", "spine_cfg", "default_inputs",
    "write_prod_tree", "write_strange_files", "STRANGE_ATTR_NAMES",
]

#: Releases used by :func:`write_prod_tree` (one per minor series, some patch releases).
SPINE_VERSIONS = (
    "0.1.0", "0.2.3", "0.3.1", "0.4.0", "0.5.2", "0.6.0", "0.7.1", "0.8.0", "0.9.3", "0.10.2",
    "0.11.0", "0.12.1", "0.13.0", "0.14.2", "0.15.3", "0.16.0", "0.17.0", "0.17.1",
)

#: detector -> (configurations (name, model), datasets, first run number)
DETECTORS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...], int]] = {
    "icarus": ((("icarus_full_chain_co_250625", "full_chain"),
                ("icarus_full_chain_data_co_250625", "full_chain"),
                ("icarus_uresnet_ppn_240719", "uresnet_ppn")),
               ("bnb_nu_cosmics_v09_89", "numi_data_run2", "mpvmpr_v1"), 9000),
    "sbnd": ((("sbnd_full_chain_240918", "full_chain"),
              ("sbnd_graph_spice_250328", "graph_spice")),
             ("sbnd_bnb_cosmics_v10", "sbnd_data_run1"), 14000),
    "2x2": ((("2x2_full_chain_240819", "full_chain"),
             ("2x2_full_chain_data_240819", "full_chain"),
             ("2x2_grappa_240819", "grappa")),
            ("mpvmpr_v2", "minirun5_beam", "2x2_data_run1"), 50000),
}

_WRITER_KEYS = ("index", "run_info", "points", "reco_particles")

_PARTICLE_DTYPE = np.dtype([
    ("id", np.int64), ("interaction_id", np.int64), ("shape", np.int64), ("pid", np.int64),
    ("size", np.int64), ("ke", np.float32), ("start_point", np.float32, (3,)),
    ("end_point", np.float32, (3,)), ("is_primary", np.bool_),
])
_RUN_INFO_DTYPE = np.dtype([("run", np.int64), ("subrun", np.int64), ("event", np.int64)])

_INPUTS_TOKEN = "__SPINE_DOCS_INPUTS__"


# ----------------------------------------------------------------------------- cfg

def default_inputs(dataset: str | None, *, index: int = 0, detector: str | None = None) -> list[str]:
    """The input file SPINE would have read: ``.../<detector>/<dataset>/larcv/<dataset>_<index>.root``.

    (No run or subrun in the name: SPINE's outputs are named after their inputs.)
    """
    if not dataset:
        return []
    return [f"/sdf/data/neutrino/{detector or 'generic'}/{dataset}/larcv/{dataset}_{index:06d}.root"]


def spine_cfg(*, model: str | None = "full_chain", config: str | None = "full_chain_240819",
              inputs: list[str] | None = None, detector: str | None = None,
              format_version: int | None = None, seed: int = 0) -> dict[str, Any]:
    """A realistic SPINE run configuration (the dict SPINE dumps into ``/info`` ``cfg``)."""
    cfg: dict[str, Any] = {
        "base": {"world_size": 1, "iterations": -1, "seed": seed, "dtype": "float32",
                 "unwrap": True, "log_dir": "logs", "prefix_log": True,
                 "overwrite_log": True, "log_step": 1, "split_output": True},
        "io": {
            "loader": {
                "batch_size": 64, "shuffle": False, "num_workers": 8, "collate_fn": "all",
                "dataset": {
                    "name": "larcv",
                    "file_keys": list(inputs) if inputs else None,
                    "schema": {
                        "data": {"parser": "sparse3d", "sparse_event": "sparse3d_pcluster"},
                        "seg_label": {"parser": "sparse3d",
                                      "sparse_event": "sparse3d_pcluster_semantics"},
                        "meta": {"parser": "meta", "sparse_event": "sparse3d_pcluster"},
                        "run_info": {"parser": "run_info", "sparse_event": "sparse3d_pcluster"},
                    },
                },
            },
            "writer": {"name": "hdf5", "file_name": None, "overwrite": True,
                       "suffix": config or "spine", "keys": list(_WRITER_KEYS)},
        },
        "build": {"mode": "both", "units": "cm", "fragments": False, "particles": True,
                  "interactions": True},
        "post": {"shape_logic": {"enforce_pid": True, "enforce_primary": True, "priority": 3},
                 "calo_ke": {"run_mode": "both", "scaling": 1.0, "shower_fudge": "1/0.83",
                             "priority": 1},
                 "topology_threshold": {"run_mode": "both", "ke_thresholds": {4: 50, "default": 25}}},
    }
    if format_version is not None:
        cfg["io"]["writer"]["format_version"] = format_version
    if detector:
        cfg["geo"] = {"detector": detector, "tag": "default"}
    if model:
        cfg["model"] = {
            "name": model,
            "weight_path": f"/sdf/data/neutrino/{detector or 'generic'}/spine/train/mpvmpr_v2/"
                           f"weights/{model}/default/snapshot-3999.ckpt",
            "to_numpy": True,
            "network_input": {"data": "data", "seg_label": "seg_label"},
            "modules": {
                "chain": {"deghosting": None, "segmentation": "uresnet",
                          "point_proposal": "ppn", "fragmentation": "graph_spice",
                          "shower_aggregation": "grappa", "particle_identification": "grappa"},
                "uresnet_ppn": {"uresnet": {"num_input": 1, "num_classes": 5, "filters": 32,
                                            "depth": 5, "reps": 2}},
            },
        }
    return cfg


@functools.lru_cache(maxsize=256)
def _cfg_template(model: str | None, config: str | None, detector: str | None,
                  format_version: int | None, seed: int) -> str:
    cfg = spine_cfg(model=model, config=config, inputs=[_INPUTS_TOKEN], detector=detector,
                    format_version=format_version, seed=seed)
    cfg["io"]["loader"]["dataset"]["file_keys"] = _INPUTS_TOKEN
    dumper = getattr(yaml, "CDumper", yaml.Dumper)
    return yaml.dump(cfg, Dumper=dumper)   # SPINE writes yaml.dump(cfg): sorted keys, block style


def _cfg_text(model: str | None, config: str | None, detector: str | None,
              format_version: int | None, inputs: list[str], seed: int) -> str:
    text = _cfg_template(model, config, detector, format_version, seed % 4)
    # a JSON list is a YAML flow sequence: no need to dump the whole document per file
    return text.replace(_INPUTS_TOKEN, json.dumps(inputs) if inputs else "null", 1)


# ----------------------------------------------------------------------------- one file

def _family(spine_version: str) -> str:
    parsed = parse_version(spine_version) or (0, 17, 1)
    if parsed[:2] < (0, 11):
        return "dataset_info"
    if parsed[:2] < (0, 16):
        return "group_info"
    return "versioned"


def _event_data(rng: np.random.Generator, n_events: int, run: int, subrun: int,
                first_event: int) -> dict[str, Any]:
    n_points = rng.integers(2, 9, n_events)
    n_parts = rng.integers(0, 4, n_events)
    total_points, total_parts = int(n_points.sum()), int(n_parts.sum())
    run_info = np.empty(n_events, _RUN_INFO_DTYPE)
    run_info["run"] = run
    run_info["subrun"] = subrun
    run_info["event"] = np.arange(first_event, first_event + n_events, dtype=np.int64)
    parts = np.zeros(total_parts, _PARTICLE_DTYPE)
    if total_parts:
        parts["id"] = np.concatenate([np.arange(k) for k in n_parts])
        parts["shape"] = rng.integers(0, 5, total_parts)
        parts["pid"] = rng.integers(0, 6, total_parts)
        parts["size"] = rng.integers(3, 30, total_parts)
        parts["ke"] = rng.random(total_parts, dtype=np.float32) * 1000
        parts["start_point"] = rng.random((total_parts, 3), dtype=np.float32) * 300
        parts["end_point"] = rng.random((total_parts, 3), dtype=np.float32) * 300
        parts["is_primary"] = rng.random(total_parts) < 0.5
    return {
        "index": np.arange(n_events, dtype=np.int64),
        "run_info": run_info,
        "points": rng.random((total_points, 3), dtype=np.float32) * 300,
        "points_offsets": np.concatenate([[0], np.cumsum(n_points)]).astype(np.int64),
        "reco_particles": parts,
        "parts_offsets": np.concatenate([[0], np.cumsum(n_parts)]).astype(np.int64),
        "part_index": np.arange(int(parts["size"].sum()) if total_parts else 0, dtype=np.int64),
    }


def _write_layout_1(f: h5py.File, data: dict[str, Any], n_events: int) -> None:
    """Layout 1: one dataset per key, ``events`` = one region reference per key and event."""
    index = f.create_dataset("index", data=data["index"])
    index.attrs["scalar"] = True
    run_info = f.create_dataset("run_info", data=data["run_info"])
    run_info.attrs["class_name"] = "RunInfo"
    run_info.attrs["scalar"] = True
    points = f.create_dataset("points", data=data["points"])
    points.attrs["scalar"] = False
    parts = f.create_dataset("reco_particles", data=data["reco_particles"])
    parts.attrs["class_name"] = "RecoParticle"
    parts.attrs["scalar"] = False

    events = np.empty(n_events, [(k, h5py.regionref_dtype) for k in _WRITER_KEYS])
    po, pa = data["points_offsets"], data["parts_offsets"]
    for i in range(n_events):
        events[i] = (index.regionref[i:i + 1], run_info.regionref[i:i + 1],
                     points.regionref[po[i]:po[i + 1]], parts.regionref[pa[i]:pa[i + 1]])
    f.create_dataset("events", data=events)


def _write_layout_2(f: h5py.File, data: dict[str, Any], n_events: int) -> None:
    """Layout 2: ``products/<key>/`` with flat values and ``event_offsets``."""
    products = f.create_group("products")
    ones = np.arange(n_events + 1, dtype=np.int64)

    g = products.create_group("index")
    g.attrs.update({"scalar": True, "kind": "array"})
    g.create_dataset("values", data=data["index"])
    g.create_dataset("event_offsets", data=ones)

    g = products.create_group("run_info")
    g.attrs.update({"scalar": True, "kind": "objects", "class_name": "RunInfo"})
    g.create_dataset("fixed", data=data["run_info"])
    g.create_dataset("event_offsets", data=ones)
    g.create_group("variables")

    g = products.create_group("points")
    g.attrs.update({"scalar": False, "kind": "array"})
    g.create_dataset("values", data=data["points"])
    g.create_dataset("event_offsets", data=data["points_offsets"])

    g = products.create_group("reco_particles")
    g.attrs.update({"scalar": False, "kind": "objects", "class_name": "RecoParticle"})
    parts = data["reco_particles"]
    fixed_dtype = np.dtype(_PARTICLE_DTYPE.descr + [("_var_offsets_0", np.int64, (2,))])
    fixed = np.zeros(len(parts), fixed_dtype)
    for name in _PARTICLE_DTYPE.names:
        fixed[name] = parts[name]
    if len(parts):
        ends = np.cumsum(parts["size"])
        fixed["_var_offsets_0"][:, 0] = ends - parts["size"]
        fixed["_var_offsets_0"][:, 1] = ends
    g.create_dataset("fixed", data=fixed)
    g.create_dataset("event_offsets", data=data["parts_offsets"])
    pool = g.create_group("variables").create_group("pool_0")
    pool.attrs.update({"kind": "array", "fields": "- index\n"})
    pool.create_dataset("values", data=data["part_index"])

    f.create_dataset("events", data=np.arange(n_events, dtype=np.int64))


def write_spine_file(
    path: str | os.PathLike[str],
    *,
    spine_version: str = "0.17.1",
    format_version: int | None = 2,
    n_events: int = 20,
    run: int = 1,
    subrun: int = 0,
    first_event: int = 0,
    model: str | None = "full_chain",
    dataset: str | None = "mpvmpr_v1",
    config: str | None = "full_chain_240819",
    complete: bool = True,
    root_attrs: Mapping[str, Any] | None = None,
    inputs: list[str] | None = None,
    seed: int = 0,
    detector: str | None = None,
    cfg: bool = True,
) -> Path:
    """Write one file as SPINE ``spine_version`` would have, and return its path.

    * SPINE < 0.11: ``/info`` is an empty dataset with ``version`` and ``cfg``; layout 1.
    * 0.11 - 0.15: ``/info`` is a group and adds ``complete``; layout 1.
    * >= 0.16: also ``spine_version``, ``format`` and ``format_version``; layout
      ``format_version`` (None means 1 here: these releases always record it).

    ``format_version`` is ignored before 0.16, and so is ``complete`` before 0.11 (no such
    attribute existed). ``inputs`` default to :func:`default_inputs` of ``dataset``;
    ``config`` becomes ``io.writer.suffix``; ``model`` ``model.name`` (None: no model block);
    ``root_attrs`` are written on the root group as another producer would (SPINE writes
    none). ``cfg=False`` leaves the ``cfg`` attribute out. Data products: ``index``,
    ``run_info`` (run, subrun, events ``first_event..``), ``points``, ``reco_particles``.
    """
    path = Path(path)
    family = _family(spine_version)
    layout = 1 if family != "versioned" else (format_version or 1)
    if inputs is None:
        inputs = default_inputs(dataset, index=seed, detector=detector)
    rng = np.random.default_rng(seed)
    data = _event_data(rng, n_events, run, subrun, first_event)
    cfg_text = _cfg_text(model, config, detector, layout if family == "versioned" else None,
                         list(inputs), seed) if cfg else None

    with h5py.File(path, "w") as f:
        if family == "dataset_info":
            info = f.create_dataset("info", (0,), maxshape=(None,), dtype="f4")  # SPINE: dtype=None
        else:
            info = f.create_group("info")
        info.attrs["version"] = spine_version
        if family == "versioned":
            info.attrs["spine_version"] = spine_version
            info.attrs["format"] = SPINE_FORMAT_NAME
            info.attrs["format_version"] = layout
        if family != "dataset_info":
            info.attrs["complete"] = bool(complete)
        if cfg_text is not None:
            info.attrs["cfg"] = cfg_text
        if root_attrs:
            for key, value in root_attrs.items():
                f.attrs[key] = value
        if layout == 2:
            _write_layout_2(f, data, n_events)
        else:
            _write_layout_1(f, data, n_events)
    return path


# ----------------------------------------------------------------------------- production tree

def _job_metadata(run_dir: Path, *, prod_version: str, detector: str, config: str,
                  num_files: int, stamp: str, job_seed: int) -> dict[str, Any]:
    job_name = f"spine_{detector}_{config}"
    submitted = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    return {
        "spine_prod_version": prod_version,
        "job_name": job_name,
        "stage": "inference",
        "run_dir": str(run_dir),
        "detector": detector,
        "config": f"infer/{detector}/{config}.cfg",
        "original_config": f"infer/{detector}/{config}.cfg",
        "applied_modifiers": [],
        "set_overrides": [],
        "profile": "s3df_ampere",
        "profile_config": {"partition": "ampere", "gpus": 1, "cpus_per_task": 28,
                           "mem_per_cpu": "8g", "time": "2:00:00", "site": "s3df"},
        "num_files": num_files,
        "num_chunks": max(1, -(-num_files // 1000)),
        "files_per_task": 1,
        "job_ids": [str(40_000_000 + job_seed * 17 + k) for k in range(max(1, -(-num_files // 1000)))],
        "output": str(run_dir / "tasks"),
        "output_suffix": config,
        "submitted": submitted,
        "command": f"./submit.py --config infer/{detector}/{config}.cfg "
                   f"--source-list {detector}_files.txt",
    }


def _sidecar(path: Path, *, spine_version: str, inputs: list[str], run: int, subrun: int,
             first_event: int, n_events: int, dataset: str) -> dict[str, Any]:
    return {
        "file_name": path.name,
        "file_type": "mc" if "data" not in dataset else "data",
        "file_format": "hdf5",
        "data_tier": "spine-reco",
        "data_stream": "physics",
        "application": {"family": "spine", "name": "spine", "version": f"v{spine_version}"},
        "parents": [{"file_name": os.path.basename(p)} for p in inputs],
        "runs": [[run, subrun, "physics"]],
        "event_count": n_events,
        "first_event": first_event,
        "last_event": first_event + n_events - 1,
        "Dataset.Tag": dataset,
    }


def write_prod_tree(
    root: str | os.PathLike[str],
    n_files: int,
    *,
    seed: int = 0,
    sidecars: bool = True,
    n_runs: int | None = None,
    events: tuple[int, int] = (5, 30),
    incomplete_fraction: float = 0.03,
    foreign_fraction: float = 0.04,
    tasks_per_chunk: int = 100,
) -> list[Path]:
    """Write a spine-prod production tree of ``n_files`` HDF5 files under ``root``.

    ``n_runs`` production run directories (default: ``n_files // 40`` within 3..24) named
    ``runs/<YYYYmmdd_HHMMSS>_spine_<detector>_<config>/`` each with ``job_metadata.json``,
    cycle over the detectors of :data:`DETECTORS`; each uses one SPINE release (from
    :data:`SPINE_VERSIONS`, so 0.1 to 0.17 appear), one model, one dataset and one range of
    runs; releases >= 0.16 alternate layouts 2 and 1. Files go to ``tasks/chunk_NNN/task_K/output/
    <input_stem>_<config>.h5``; ``incomplete_fraction`` of the files of releases >= 0.11 have
    ``complete = False``; with ``sidecars``, every other run directory puts a SAM-style
    ``<file>.h5.json`` beside each file. About ``foreign_fraction`` of the files come from
    another producer: half are SPINE files with extra root attributes (a merge tool), half
    are plain HDF5 files with root attributes only, under
    ``other/<user>/run_NNNNNN/<name>_subrunN.h5``. Same seed, same tree (byte for byte).
    Returns the HDF5 files written, in creation order.
    """
    root = Path(root)
    rnd = random.Random(seed)
    if n_runs is None:
        n_runs = min(24, max(3, n_files // 40))
    n_runs = max(1, min(n_runs, max(1, n_files)))
    detectors = list(DETECTORS)

    runs = []
    stamps: set[str] = set()
    n_versioned = 0
    versions = list(SPINE_VERSIONS)
    rnd.shuffle(versions)
    for r in range(n_runs):
        detector = detectors[r % len(detectors)]
        configs, datasets, first_run = DETECTORS[detector]
        config, model = configs[rnd.randrange(len(configs))]
        dataset = datasets[rnd.randrange(len(datasets))]
        spine_version = versions[r % len(versions)]
        day = 1 + (r * 7 + seed) % 28
        month = 1 + (r + seed) % 12
        stamp = f"2025{month:02d}{day:02d}_{rnd.randrange(24):02d}{rnd.randrange(60):02d}{rnd.randrange(60):02d}"
        while stamp in stamps:   # one directory per production
            stamp = stamp[:-2] + f"{(int(stamp[-2:]) + 1) % 60:02d}"
        stamps.add(stamp)
        run_dir = root / "runs" / f"{stamp}_spine_{detector}_{config}"
        if _family(spine_version) == "versioned":
            n_versioned += 1
        runs.append({
            "dir": run_dir, "detector": detector, "config": config, "model": model,
            "dataset": dataset, "spine_version": spine_version,
            "prod_version": f"1.{r % 5}.{rnd.randrange(4)}",
            # releases >= 0.16 alternate layouts 1 and 2
            "format_version": 2 if n_versioned % 2 == 0 else 1,
            "first_run": first_run + rnd.randrange(500), "stamp": stamp,
            "sidecars": sidecars and r % 2 == 0, "files": 0,
        })

    written: list[Path] = []
    made_dirs: set[Path] = set()

    def mkdir(d: Path) -> None:
        if d not in made_dirs:
            d.mkdir(parents=True, exist_ok=True)
            made_dirs.add(d)

    lo, hi = events
    for i in range(n_files):
        file_seed = seed * 1_000_003 + i
        n_events = rnd.randint(lo, hi)
        draw = rnd.random()
        if draw < foreign_fraction / 2:
            # a plain HDF5 file from another producer: root attributes, no /info
            user = ("jdoe", "asmith", "kwong")[i % 3]
            run, subrun = 7000 + i % 11, i % 7
            d = root / "other" / user / f"run_{run:06d}"
            mkdir(d)
            p = d / f"larcv2h5_output_subrun{subrun}_{i:06d}.h5"
            with h5py.File(p, "w") as f:
                f.attrs["producer"] = "larcv2h5"
                f.attrs["producer_version"] = "2.3.1"
                f.attrs["detector"] = ("icarus", "sbnd", "2x2")[i % 3]
                f.attrs["run"] = run
                f.attrs["subrun"] = subrun
                f.attrs["num_events"] = n_events
                f.attrs["created"] = f"2024-0{1 + i % 9}-1{i % 10}T12:00:00Z"
                f.create_dataset("voxels", data=np.arange(n_events * 4, dtype=np.int32).reshape(n_events, 4))
            written.append(p)
            continue

        prod = runs[i % n_runs]
        j = prod["files"]
        prod["files"] += 1
        chunk, task = divmod(j, tasks_per_chunk)
        d = prod["dir"] / "tasks" / f"chunk_{chunk:03d}" / f"task_{task + 1}" / "output"
        mkdir(d)
        inputs = default_inputs(prod["dataset"], index=j, detector=prod["detector"])
        stem = Path(inputs[0]).stem
        p = d / f"{stem}_{prod['config']}.h5"
        run = prod["first_run"] + j // 50
        subrun = j % 50
        family = _family(prod["spine_version"])
        complete = not (family != "dataset_info" and rnd.random() < incomplete_fraction)
        root_attrs = None
        if foreign_fraction / 2 <= draw < foreign_fraction:
            root_attrs = {"merged_by": "h5merge", "merge_tool_version": "0.3",
                          "merged_inputs": 2, "merge_date": "2025-03-01T00:00:00Z"}
        write_spine_file(
            p, spine_version=prod["spine_version"], format_version=prod["format_version"],
            n_events=n_events, run=run, subrun=subrun, first_event=(j % 50) * 100,
            model=prod["model"], dataset=prod["dataset"], config=prod["config"],
            complete=complete, root_attrs=root_attrs, inputs=inputs, seed=file_seed,
            detector=prod["detector"])
        if prod["sidecars"]:
            side = _sidecar(p, spine_version=prod["spine_version"], inputs=inputs, run=run,
                            subrun=subrun, first_event=(j % 50) * 100, n_events=n_events,
                            dataset=prod["dataset"])
            (p.parent / (p.name + ".json")).write_text(json.dumps(side, indent=1))
        written.append(p)

    for r, prod in enumerate(runs):
        mkdir(prod["dir"])
        job = _job_metadata(prod["dir"], prod_version=prod["prod_version"],
                            detector=prod["detector"], config=prod["config"],
                            num_files=prod["files"], stamp=prod["stamp"], job_seed=seed * 100 + r)
        (prod["dir"] / "job_metadata.json").write_text(json.dumps(job, indent=2))
    return written


# ----------------------------------------------------------------------------- strange files

#: Root attribute names of the ``strange_attrs`` file (escaping, clashes, unicode).
STRANGE_ATTR_NAMES = (
    "a.b.c", "$where", "path", "_id", "site", "%percent", "énergie", "能量", "🚀 rocket",
)


def _strange_attrs_file(path: Path, big_elements: int) -> None:
    with h5py.File(path, "w", libver="latest") as f:   # dense attribute storage: large values
        target = f.create_dataset("target", data=np.arange(10, dtype=np.int32))
        f.create_dataset("big_dataset", shape=(big_elements,), dtype=np.float64,
                         chunks=(min(big_elements, 1_000_000),), compression="gzip",
                         fillvalue=0.0)
        a = f.attrs
        a["uint64_max"] = np.uint64(2 ** 64 - 1)
        a["int64_min"] = np.int64(-(2 ** 63))
        a["nan"] = np.float64("nan")
        a["inf"] = np.float64("inf")
        a["neg_inf"] = np.float64("-inf")
        a["neg_zero"] = np.float64(-0.0)
        a["float16"] = np.float16(1.5)
        a["bool"] = np.bool_(True)
        a["bytes_non_utf8"] = np.bytes_(b"\xff\xfe\xfdabc")
        a["bytes_with_nul"] = np.bytes_(b"abc\x00def")
        a["utf8_string"] = "naïve ☃"
        a["long_string"] = "x" * 1_000_000
        a["big_array"] = np.zeros(big_elements, dtype=np.uint8)
        a["matrix"] = np.arange(12, dtype=np.float32).reshape(3, 4)
        a["string_array"] = np.array(["a", "bb", "ccc"], dtype=h5py.string_dtype())
        a["compound"] = np.array((1, 2.5, b"xyz"), dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S3")])
        a.create("enum", 1, dtype=h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 2}, basetype="i1"))
        a["object_reference"] = target.ref
        a.create("region_reference", target.regionref[2:5], dtype=h5py.regionref_dtype)
        a["empty_null"] = h5py.Empty("f8")
        a["zero_length"] = np.zeros(0, dtype=np.int64)
        a["complex"] = np.complex128(1 + 2j)
        a["vlen_ints"] = np.array([np.arange(3), np.arange(5)], dtype=h5py.vlen_dtype(np.int64))
        for i, name in enumerate(STRANGE_ATTR_NAMES):
            a[name] = f"value {i}"


def write_strange_files(directory: str | os.PathLike[str], *,
                        big_elements: int = 10_000_000, wide: int = 3000,
                        deep: int = 40) -> dict[str, Path]:
    """Files a catalog must survive, by name:

    ``corrupt`` (HDF5 signature then random bytes), ``truncated`` (a valid SPINE file cut in
    half), ``empty`` (0 bytes), ``not_hdf5`` (text named ``.h5``), ``strange_attrs`` (every odd
    root attribute: uint64 max, NaN, +-inf, non-UTF-8 bytes, a 1 MB string, a
    ``big_elements`` array, compound, enum, object and region references, null dataspace,
    zero-length array, complex, vlen, names with ``.``, a leading ``$``, ``%``, names
    clashing with document fields ``path``/``_id``/``site``, unicode names; see
    :data:`STRANGE_ATTR_NAMES`), ``deep_wide`` (``wide`` datasets in 50 groups plus a chain of
    ``deep`` nested groups), ``incomplete`` (SPINE file with ``complete = False``),
    ``odd_spine`` (a SPINE-looking ``/info`` with wrong types, a non-YAML ``cfg``, a
    ``run_info`` of floats with NaN/-1/huge values, ``events`` an external link to a missing
    file and ``products`` a dangling soft link), ``broken_symlink`` (a link to nothing) and
    ``directory`` (a directory named ``x.h5``).

    HDF5 attributes cannot be chunked or compressed, so the ``big_array`` attribute costs one
    byte per element (10 MB by default); the same number of float64 values also sits, chunked
    and gzip-compressed (a few kB), in the dataset ``big_dataset``.

    An unreadable file is left to the tests (``chmod 000``): root ignores permissions, so a
    test doing that must skip when running as root.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    rng = np.random.default_rng(12345)

    p = d / "corrupt.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out["corrupt"] = p

    full = write_spine_file(d / "_full_for_truncation.h5", n_events=200, seed=7)
    raw = full.read_bytes()
    full.unlink()
    p = d / "truncated.h5"
    p.write_bytes(raw[: len(raw) // 2])
    out["truncated"] = p

    p = d / "empty.h5"
    p.write_bytes(b"")
    out["empty"] = p

    p = d / "not_hdf5.h5"
    p.write_text("this is not an HDF5 file\nrun: 1\n")
    out["not_hdf5"] = p

    p = d / "strange_attrs.h5"
    _strange_attrs_file(p, big_elements)
    out["strange_attrs"] = p

    p = d / "deep_wide.h5"
    with h5py.File(p, "w", libver="latest") as f:
        groups = [f.create_group(f"group_{g:02d}") for g in range(50)]
        for k in range(wide):
            groups[k % 50].create_dataset(f"ds_{k:05d}", shape=(k % 7,), dtype=np.int16)
        g = f
        for level in range(deep):
            g = g.create_group(f"level_{level:03d}")
        g.create_dataset("bottom", data=np.arange(3))
    out["deep_wide"] = p

    out["incomplete"] = write_spine_file(d / "incomplete.h5", complete=False, seed=3)

    p = d / "odd_spine.h5"
    with h5py.File(p, "w") as f:
        info = f.create_group("info")
        info.attrs["version"] = np.array([b"0.9", b"1.0"])        # an array, not a string
        info.attrs["spine_version"] = np.bytes_(b"\xffbad")     # not UTF-8
        info.attrs["format"] = "spine_hdf5"
        info.attrs["format_version"] = "two"
        info.attrs["complete"] = np.int8(5)
        info.attrs["cfg"] = "model: [unclosed\n  name: ::\n"
        run_info = np.zeros(4, [("run", "f8"), ("subrun", "f8"), ("event", "S4")])
        run_info["run"] = [np.nan, -1.0, 3.0, 1e30]
        f.create_dataset("run_info", data=run_info)
        f["events"] = h5py.ExternalLink("missing_file.h5", "/events")
        f["products"] = h5py.SoftLink("/nowhere")
    out["odd_spine"] = p

    p = d / "broken_symlink.h5"
    if p.is_symlink():
        p.unlink()
    os.symlink(d / "does_not_exist.h5", p)
    out["broken_symlink"] = p

    p = d / "x.h5"
    p.mkdir(exist_ok=True)
    out["directory"] = p
    return out

