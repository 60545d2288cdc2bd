"""Sample files whose catalog facts are known before anything is indexed.

The CLI and explorer tests take their expected values from what :func:`write_known_files`
returns (counted in plain Python), never from ``spine_docs.queries`` on the same catalog: a
query bug then fails them instead of moving the expectation along with the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from spine_docs import samples

MODELS = ("full_chain", "uresnet_ppn", "graph_spice", "grappa", None)  # None: no model block
DATASETS = ("bnb_nu", "numi_data", "mpv_mix", "bnb_nu")  # bnb_nu twice as often
VERSIONS = ("0.17.1", "0.12.1", "0.16.0", "0.11.0", "0.14.2", "0.9.3", "0.5.2")
FIRST_RUN = {"bnb_nu": 100, "numi_data": 200, "mpv_mix": 300}
MTIME_0 = 1_735_700_000  # 2025-01-01 ~03:00 UTC; file i is 4 h newer than file i - 1


def _older_than_0_11(version: str) -> bool:
    return tuple(int(p) for p in version.split(".")[:2]) < (0, 11)


def write_known_files(root: str | os.PathLike[str], n: int = 48) -> list[dict]:
    """Write ``n`` files under ``root`` and return what the catalog must say of each:
    ``path, model, dataset, spine_version, status, run, subrun, num_events, attrs`` (root
    attributes by their HDF5 names), ``mtime`` (whole seconds, all different) and ``size``.

    * file ``i % 8 == 3`` is a plain HDF5 file of another producer under ``other/``: root
      attributes ``producer`` and ``num_events`` only, so no model, dataset, version or run;
    * the others are SPINE files under ``runs/<dataset>/``: model ``MODELS[i % 5]``, dataset
      ``DATASETS[i % 4]``, version ``VERSIONS[i % 7]``, incomplete when ``i % 10 == 7`` (and
      the version records completeness, i.e. >= 0.11), run ``FIRST_RUN[dataset] + i // 3``
      plus 3 from ``i >= 24`` on (a gap), subrun ``i % 4``; root attributes ``beam.energy``
      (``i % 4 == 0``), ``operator`` (``i % 5 == 1``) and ``rare_flag`` (``i == 10``).
    """
    root = Path(root)
    out: list[dict] = []
    for i in range(n):
        n_events = 5 + (i * 7) % 26
        if i % 8 == 3:
            d = root / "other" / ("jdoe", "asmith")[i % 2]
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"plain_{i:03d}.h5"
            attrs = {"producer": "larcv2h5", "num_events": n_events}
            with h5py.File(path, "w") as f:
                for k, v in attrs.items():
                    f.attrs[k] = v
                f.create_dataset("voxels", data=np.arange(4 * n_events, dtype=np.int32))
            spec = {"model": None, "dataset": None, "spine_version": None, "status": "ok",
                    "run": None, "subrun": None}
        else:
            model, dataset, version = MODELS[i % 5], DATASETS[i % 4], VERSIONS[i % 7]
            complete = i % 10 != 7
            attrs = {}
            if i % 4 == 0:
                attrs["beam.energy"] = i / 4
            if i % 5 == 1:
                attrs["operator"] = ("shift_a", "shift_b")[i % 2]
            if i == 10:
                attrs["rare_flag"] = True
            run, subrun = FIRST_RUN[dataset] + i // 3 + (3 if i >= 24 else 0), i % 4
            d = root / "runs" / dataset
            d.mkdir(parents=True, exist_ok=True)
            path = samples.write_spine_file(
                d / f"file_{i:03d}.h5", spine_version=version, n_events=n_events, run=run,
                subrun=subrun, model=model, dataset=dataset, complete=complete,
                root_attrs=attrs or None, seed=i)
            incomplete = not complete and not _older_than_0_11(version)
            spec = {"model": model, "dataset": dataset, "spine_version": version,
                    "status": "incomplete" if incomplete else "ok", "run": run, "subrun": subrun}
        mtime = MTIME_0 + 4 * 3600 * i
        os.utime(path, (mtime, mtime))
        out.append({"path": str(path), **spec, "num_events": n_events, "attrs": attrs,
                    "mtime": mtime, "size": os.path.getsize(path)})
    return out


def facet_counts(specs: list[dict], field: str) -> list[dict]:
    """``[{"value", "count"}]`` of a field, by decreasing count, ties by value (None first,
    as null sorts before strings in MongoDB)."""
    counts: dict = {}
    for s in specs:
        counts[s[field]] = counts.get(s[field], 0) + 1
    return sorted(({"value": v, "count": c} for v, c in counts.items()),
                  key=lambda e: (-e["count"], e["value"] is not None, str(e["value"])))


def attribute_counts(specs: list[dict]) -> dict[str, int]:
    """Root attribute name -> number of files that have it."""
    counts: dict[str, int] = {}
    for s in specs:
        for k in s["attrs"]:
            counts[k] = counts.get(k, 0) + 1
    return counts
