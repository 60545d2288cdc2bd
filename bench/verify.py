"""verify benchmark: ``python bench/verify.py [--files 50000] [--dir D] [--keep]``.

Writes N small files (real HDF5 files are copied from a few generated samples, so that the
tree is quick to make), indexes them once, then times, each as a whole process
(``python -m spine_docs.cli ...``, start-up included), on the same tree and catalog:

* ``inject`` re-scan: every file unchanged (stat, compare, one write per 1,000 files seen);
* ``verify``: every file unchanged (stat, compare, no write);
* ``verify`` after deleting 1% of the files (their verdicts written).

Prints files/s of each and verify's speed relative to the re-scan. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "spine_docs.cli", *args], env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return seconds, json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    from spine_docs import samples

    root = a.dir or Path(tempfile.mkdtemp(prefix="spine_docs_bench_verify_"))
    data, catalog = root / "data", root / "catalog"
    models = samples.write_prod_tree(root / "models", 20, seed=1)
    for i in range(a.files):
        d = data / f"d{i // 1000:03d}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models[i % len(models)], d / f"f{i:06d}.h5")
    env = dict(os.environ, SPINE_DOCS_SITE="bench", SPINE_DOCS_DB=str(catalog))
    t, rep = run(["inject", "--source", str(data), "--json", "--no-progress"], env)
    print(f"{a.files:,} files indexed in {t:.1f} s")
    rescan, rep = run(["inject", "--source", str(data), "--json", "--no-progress"], env)
    assert rep["unchanged"] == a.files, rep
    vt, vrep = run(["verify", "--json", "--no-progress"], env)
    assert vrep["ok"] == a.files, vrep
    for i in range(0, a.files, 100):
        os.remove(data / f"d{i // 1000:03d}" / f"f{i:06d}.h5")
    mt, mrep = run(["verify", "--json", "--no-progress"], env)
    print(f"{'':<32}{'seconds':>9}{'files/s':>10}")
    for label, s in (("inject re-scan (all unchanged)", rescan), ("verify (all ok)", vt),
                     (f"verify ({mrep['missing']:,} missing)", mt)):
        print(f"{label:<32}{s:>9.2f}{a.files / s:>10,.0f}")
    print(f"verify / re-scan speed: {rescan / vt:.2f}x (whole processes, start-up included)")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    if not a.keep and a.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
