"""Worker processes that never outlive the process that started them.

:func:`parallel_map` is ``map`` over a forkserver process pool, with two guarantees that
``concurrent.futures`` alone does not give:

* when the caller stops early (an exception, Ctrl-C, ``SIGTERM`` turned into an exception by
  the CLI), the workers are killed at once instead of finishing their queued chunks;
* when the calling process dies without cleaning up (``kill -9``, a batch system's hard
  limit), every worker notices within about half a second and exits: each one watches the
  caller's pid from a daemon thread (its parent is the forkserver, so the kernel's
  parent-death signal is set as well, for when the forkserver goes first). The forkserver
  and the resource tracker exit by themselves once no worker holds their pipes.

Workers start warm: the forkserver imports the modules they need (``preload``, and the
modules the caller's main program is made of, which every worker would otherwise import
again on its own) once, before it forks any of them. :func:`start` starts it ahead of the
first :func:`parallel_map`, so that those imports run in its own process while the caller
does other work.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import InvalidStateError, ProcessPoolExecutor
from multiprocessing import forkserver
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: how often a worker checks that the process that started it is still there (seconds)
WATCH_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid taken by another user's process: ours is gone
        return False
    return True


def _watch(pid: int, interval: float) -> None:
    while _parent_alive(pid):
        time.sleep(interval)
    os._exit(1)  # no cleanup: nobody is left to receive what this worker would send


def _set_parent_death_signal() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog thread alone does it
        pass


def _init_worker(caller_pid: int, interval: float, initializer: Callable[[], None] | None) -> None:
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    threading.Thread(target=_watch, args=(caller_pid, interval), name="spine-docs-watchdog",
                     daemon=True).start()
    if initializer is not None:
        initializer()


def main_modules() -> list[str]:
    """The modules a worker imports before anything else: multiprocessing runs the caller's
    main program again in each worker it starts from a forkserver (and Python < 3.13 never
    preloads it there). A program run with ``-m`` is that module; a script (such as the
    ``spine-docs`` entry point, whose only import is ``spine_docs.cli``) imports the modules
    it took its names from."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        name = spec.name
        return [] if name == "__main__" or name.endswith(".__main__") else [name]
    if getattr(main, "__file__", None) is None:  # interactive: workers import nothing of it
        return []
    names: list[str] = []
    for value in vars(main).values():
        if isinstance(value, types.ModuleType):
            name = value.__name__
        elif isinstance(value, (types.FunctionType, type)):
            name = value.__module__
        else:
            continue
        if name not in ("__main__", "builtins") and name not in names:
            names.append(name)
    return names


def start(preload: Sequence[str] = ()) -> None:
    """Start the forkserver now if it is not running: it imports ``preload`` (the modules of
    the functions the workers will run) and :func:`main_modules` in its own process, while
    the caller goes on; the workers :func:`parallel_map` starts later fork from it with those
    imports done. A forkserver already running keeps what it imported."""
    modules = list(dict.fromkeys([*main_modules(), *preload]))
    forkserver.set_forkserver_preload(modules)
    forkserver.ensure_running()


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, chunksize: int = 1,
                 initializer: Callable[[], None] | None = None,
                 interval: float = WATCH_INTERVAL_S, preload: Sequence[str] = ()) -> Iterator[R]:
    """``fn`` over ``items`` in ``workers`` forkserver processes; results in input order.

    ``fn`` and ``initializer`` must be picklable (module-level functions or partials of
    them); ``preload`` names the modules they live in (see :func:`start`). The pool lives as
    long as the returned iterator: closing it early (or an exception in the consumer, which
    closes it) cancels what is queued and kills the workers.

    Example::

        for doc in parallel_map(partial(extract, site="s3df"), paths, workers=4, chunksize=16,
                                preload=["spine_docs.extract"]):
            ...
    """
    pool = _executor(workers, interval, initializer, preload)
    finished = False
    try:
        with _signals_held():
            results = pool.map(fn, items, chunksize=chunksize)
        yield from results
        finished = True
    finally:
        _stop(pool, finished)


def _executor(workers: int, interval: float, initializer: Callable[[], None] | None,
              preload: Sequence[str], fork: bool = False) -> ProcessPoolExecutor:
    """The pool whose workers watch this process (see the module docstring): forked from
    the forkserver, or, with ``fork`` where that is safe (Linux, and no other thread in
    this process), from this process."""
    if fork and sys.platform.startswith("linux") and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    else:
        start(preload)
        ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(), interval, initializer))


def _stop(pool: ProcessPoolExecutor, finished: bool) -> None:
    """A pool whose work is ``finished`` shuts down; any other is killed at once."""
    if finished:
        pool.shutdown(wait=True)
    else:
        _kill(pool)


class Background:
    """``fn(*args)`` in one forkserver worker process, started now, while the caller goes
    on; :meth:`result` waits for it. The worker has the guarantees of :func:`parallel_map`'s:
    :meth:`close` (or leaving a ``with`` block, an exception included) before the result
    came kills it, and it notices a caller killed with ``kill -9``. ``fn`` must be
    picklable, and ``preload`` names its module (see :func:`start`).

    ``fork=True`` forks the worker from the caller instead, where that is safe (Linux, and
    no other thread in the caller): it starts at once, without waiting for the
    forkserver's imports (the CLI's discovery, before the catalog is opened)."""

    def __init__(self, fn: Callable[..., R], *args: Any, preload: Sequence[str] = (),
                 interval: float = WATCH_INTERVAL_S, fork: bool = False):
        self._pool: ProcessPoolExecutor | None = _executor(1, interval, None, preload, fork)
        with _signals_held():
            self._future = self._pool.submit(fn, *args)

    def result(self) -> Any:
        """What ``fn`` returned (or its exception, raised here); the worker is then gone."""
        try:
            return self._future.result()
        finally:
            self.close()

    def close(self) -> None:
        """Done with it: the worker exits, at once if it is still working."""
        pool, self._pool = self._pool, None
        if pool is not None:
            _stop(pool, self._future.done())

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is over, then take effect.

    ``map()`` submits every chunk at once, and a submit may start a worker: interrupted in
    the middle of that, a worker is left half started (not yet known to the pool, so not
    killed) and fails loudly once the caller's semaphores are gone. Blocking the signals
    with ``pthread_sigmask`` is not enough (another thread of the process receives them and
    Python still runs the handler in the main thread), so the handlers are swapped for ones
    that only remember; the first remembered signal is sent again at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in wanted}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if caught:
            os.kill(os.getpid(), caught[0])  # the original handler takes it from here


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop at once: cancel what is queued, kill the workers, reap them, and wait for the
    pool's manager thread to notice (so that nothing of the pool is left running)."""
    # ProcessPoolExecutor has no public way to kill its workers; _processes (pid -> Process)
    # and _executor_manager_thread have been there since Python 3.2 and 3.9
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    previous = threading.excepthook

    def quiet(args: Any) -> None:
        # Python < 3.12's manager thread, finding the pool broken, sets an exception on the
        # futures it still lists, cancelled ones included, which raises InvalidStateError
        # there and prints a traceback (CPython fixed it by ignoring that error): harmless
        if args.thread is manager and isinstance(args.exc_value, InvalidStateError):
            return
        previous(args)

    threading.excepthook = quiet
    try:
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            try:
                p.kill()
            except (OSError, ValueError, AttributeError):
                pass
        for p in processes:
            try:
                p.join(timeout=5)
            except (OSError, ValueError, AssertionError):
                pass
        if manager is not None and manager is not threading.current_thread():
            manager.join(timeout=5)
    finally:
        threading.excepthook = previous
