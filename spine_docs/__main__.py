"""The ``spine-docs`` command's entry point (and ``python -m spine_docs``).

It stays light on purpose, for two reasons that both concern the extraction workers:

* a command that will extract in worker processes (``inject``, ``demo``) starts their
  forkserver first (:func:`pool.start`), so that the workers' imports (h5py, numpy, the
  readers) run on another core while this process imports the CLI (typer, pydantic, pymongo:
  a third of a second) and opens the catalog;
* a worker started from a forkserver runs the caller's main program again before its task
  (Python < 3.13 does, without preloading it): the ``spine-docs`` script's main program is
  ``from spine_docs.__main__ import main``, this module, so a worker imports nothing of the
  CLI, only :data:`worker.MODULES`.
"""

from __future__ import annotations

import os
import sys

#: the commands that extract files in worker processes
EXTRACTING = frozenset({"inject", "demo"})


def wants_workers(argv: list[str], environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Whether the command line will extract in worker processes: an extracting command,
    not asking for help, with more than one worker (``--workers``, else
    ``SPINE_DOCS_WORKERS``, else the CPU count). A wrong guess costs little either way: the
    CLI starts the workers anyway when it needs them, and a forkserver nobody used exits
    with this process."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in EXTRACTING or "--help" in argv or "-h" in argv:
        return False
    workers = environ.get("SPINE_DOCS_WORKERS") or str(os.cpu_count() or 1)
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            workers = argv[i + 1]
        elif arg.startswith("--workers="):
            workers = arg.split("=", 1)[1]
    try:
        return int(workers) > 1
    except ValueError:
        return False  # the CLI reports it


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if wants_workers(args):
        from . import pool, worker

        pool.start(worker.MODULES)
    from .cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
