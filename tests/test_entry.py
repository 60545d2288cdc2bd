"""The ``spine-docs`` entry point (``spine_docs.__main__``): a command that will extract in
worker processes starts their forkserver before the CLI's imports, and a worker imports the
readers and nothing of the CLI, the catalog or pymongo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spine_docs import samples
from spine_docs.__main__ import wants_workers

REPO = Path(__file__).resolve().parent.parent
#: what a worker must not import: the CLI and what only the writing process needs
HEAVY = ("typer", "pydantic", "pymongo", "rich", "mongomock", "spine_docs.cli",
         "spine_docs.ingest", "spine_docs.store", "spine_docs.settings")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_DOCS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    return env


def test_the_console_script_is_the_light_entry_point():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "spine-docs"]
    assert script.value == "spine_docs.__main__:main"  # as installed from pyproject.toml


@pytest.mark.parametrize("argv, env, expected", [
    (["inject", "--source", "x"], {}, True),
    (["inject", "--source", "x", "--workers", "2"], {}, True),
    (["--version"], {}, False),
    (["query", "--dataset", "d"], {}, False),
    (["inject", "--help"], {}, False),
    (["inject", "-h"], {}, False),
    (["inject", "--workers", "1"], {}, False),
    (["inject", "--workers=1"], {}, False),
    (["inject", "--workers=3"], {"SPINE_DOCS_WORKERS": "1"}, True),  # the flag wins
    (["inject"], {"SPINE_DOCS_WORKERS": "1"}, False),
    (["inject"], {"SPINE_DOCS_WORKERS": "4"}, True),
    (["inject", "--workers", "many"], {}, False),  # the CLI says what is wrong with it
    (["demo", "--db", "d"], {"SPINE_DOCS_WORKERS": "2"}, True),
])
def test_which_command_lines_start_the_workers_early(argv, env, expected, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert wants_workers(argv, env) is expected


def test_one_cpu_means_no_workers(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert wants_workers(["inject", "--source", "x"], {}) is False


PROBE = """\
import sys

HEAVY = {heavy!r}


def loaded(_item):
    return sorted(m for m in HEAVY if m in sys.modules), "h5py" in sys.modules
"""

# what the installed `spine-docs` script is made of (its only import is the entry point);
# the CLI is imported in this process, as main() does, before the workers start
SCRIPT = """\
import json
import sys

from spine_docs.__main__ import main

if __name__ == "__main__":
    import modules_probe
    import spine_docs.cli  # noqa: F401  (this process has the CLI; its workers must not)
    from spine_docs import pool, worker

    out = list(pool.parallel_map(modules_probe.loaded, range(8), workers=2,
                                 initializer=worker.init, preload=[*worker.MODULES, "modules_probe"]))
    print(json.dumps(out))
"""


def test_a_worker_imports_the_readers_and_nothing_of_the_cli(tmp_path):
    (tmp_path / "modules_probe.py").write_text(PROBE.format(heavy=HEAVY))
    (tmp_path / "spine-docs").write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(tmp_path / "spine-docs")], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for heavy, readers in json.loads(r.stdout):
        assert heavy == [] and readers is True


# records, when spine_docs.cli is first imported, whether a forkserver is running by then
SPY = """\
import json
import sys
from multiprocessing import forkserver

seen = []


class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "spine_docs.cli":
            seen.append(forkserver._forkserver._forkserver_pid)
        return None


if __name__ == "__main__":  # a worker runs this script again, as it runs `spine-docs`
    sys.meta_path.insert(0, Spy())
    from spine_docs.__main__ import main

    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"forkserver_before_cli": seen[0] is not None, "code": code}))
"""


@pytest.mark.parametrize("workers, early", [("2", True), ("1", False)])
def test_inject_starts_the_forkserver_before_the_cli_imports(tmp_path, workers, early):
    src = tmp_path / "files"
    src.mkdir()
    for i in range(10):
        samples.write_spine_file(src / f"f{i}.h5", seed=i)
    (tmp_path / "spy.py").write_text(SPY)
    r = subprocess.run([sys.executable, str(tmp_path / "spy.py"), "inject", "--db", str(tmp_path / "cat"),
                        "--source", str(src), "--workers", workers, "--no-progress"],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out == {"forkserver_before_cli": early, "code": 0}
    assert "indexed 10," in r.stdout
