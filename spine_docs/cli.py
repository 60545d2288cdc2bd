"""The ``spine-docs`` command: parse arguments, call the library, print.

Exit codes: 0 success; 1 some files (or checks) failed; 2 usage, connection or schema errors
(one clear line on stderr, never a traceback).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from bson import json_util
from pymongo.errors import OperationFailure

from pydantic import ValidationError

from . import __version__, access, ingest, runs, schema, store
from .extract import STATUSES
from .settings import Settings, SettingsError

app = typer.Typer(
    name="spine-docs",
    help="A MongoDB metadata catalog for the HDF5 files SPINE writes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOpt = typer.Option(None, "--db", help="mongodb://..., mongodb+srv://..., mongomock://NAME or a "
                     "directory (the embedded catalog; default .spine_docs/catalog). Env: SPINE_DOCS_DB")


def fail(message: str, code: int = 2) -> "typer.Exit":
    typer.echo(f"spine-docs: {message}", err=True)
    return typer.Exit(code)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _query_errors() -> tuple[type[Exception], ...]:
    """queries' errors, when it was imported (only then can they be raised): commands that
    query import it themselves, so that `inject` does not pay for it."""
    queries = sys.modules.get(f"{__package__}.queries")
    return (queries.QueryError, queries.QueryTimeout) if queries is not None else ()


def _refusal(exc: BaseException) -> str:
    """One line for an error the database answered with: a bulk write's first write-concern
    error or refused write by its code and message (pymongo's own text is the whole reply)."""
    from pymongo.errors import WriteConcernError

    details = getattr(exc, "details", None)
    wces = (details or {}).get("writeConcernErrors") if isinstance(details, dict) else None
    if isinstance(exc, WriteConcernError) or wces:
        wce = wces[0] if wces else (details if isinstance(details, dict) else {})
        return (f"the database did not confirm the writes ({wce.get('code', getattr(exc, 'code', None))}: "
                f"{str(wce.get('errmsg', '') or exc)[:200]}); what was written may not survive a "
                f"failover: run the command again")
    if isinstance(details, dict) and "writeErrors" in details:
        if details.get("writeErrors"):
            err = details["writeErrors"][0]
            return f"the database refused a write ({err.get('code')}: {str(err.get('errmsg', ''))[:200]})"
    return f"database error: {_first_line(exc)}"


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's expected errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pymongo.errors import ConnectionFailure, PyMongoError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (store.StoreError, SettingsError) as exc:
            raise fail(str(exc))
        except schema.SchemaError as exc:
            raise fail(str(exc))
        except ConnectionFailure as exc:  # AutoReconnect, ServerSelectionTimeoutError, NetworkTimeout
            raise fail(f"the database stopped answering: {_first_line(exc)}")
        except PyMongoError as exc:  # it answered, but refused (a bad query is a QueryError)
            raise fail(_refusal(exc))
        except _query_errors() as exc:
            raise fail(str(exc))
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(x) for x in first.get("loc", ()))
            msg = str(first.get("msg", exc)).removeprefix("Value error, ")
            raise fail(f"invalid filter: {msg}" if where in msg else f"invalid filter {where}: {msg}")
        except KeyboardInterrupt:
            raise fail("interrupted", 130)
        except OSError as exc:  # a full disk, a read-only or vanished directory: say which
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}")

    return wrapper


def open_db(settings: Settings, *, create: bool = False, failover: bool = False) -> Any:
    """The catalog of ``--db``, with its credentials. Only writing commands pass
    ``create=True``: a command that reads says "no catalog at ..." where there is none, and
    writes nothing there. ``failover``: long commands that wait out an election (see
    :func:`access.connect`)."""
    return access.connect(settings, create=create, failover=failover)


def print_json(value: Any) -> None:
    typer.echo(json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS, indent=2))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"spine-docs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """A MongoDB metadata catalog for the HDF5 files SPINE writes."""


# --------------------------------------------------------------------------- setup / inject

@app.command()
@handled
def setup(db: Optional[str] = DbOpt,
          schema_file: Optional[Path] = typer.Option(None, help="schema.json to apply (default: the shipped one)")) -> None:
    """Create the collections, indexes and validators declared in schema.json."""
    settings = Settings.load(db=db, schema_file=schema_file)
    database = open_db(settings, create=True)
    report = schema.setup(database, schema.load_schema(settings.schema_file), db_url=settings.db_url)
    typer.echo(f"{store.describe(database)}: {report.summary()}")


class _Bar:
    """A rich progress bar on stderr showing files/s (silent when stderr is not a terminal)."""

    def __init__(self, enabled: bool, label: str = "indexing"):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not (enabled and console.is_terminal), transient=False)
        self.shown = not self.progress.disable
        self.task = None
        self.started = 0.0

    def __enter__(self) -> "_Bar":
        import time

        self.progress.__enter__()
        self.task = self.progress.add_task("inject", total=None, rate="")
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        import time

        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.task, completed=done, total=total, rate=f"{done / elapsed:,.0f} files/s")


@app.command()
@handled
def inject(
    source: List[str] = typer.Option([], "--source", "-s", help="Glob (quote it; ** recurses), directory or file. Repeatable."),
    source_list: Optional[Path] = typer.Option(None, "--source-list", help="File with one path per line."),
    db: Optional[str] = DbOpt,
    site: Optional[str] = typer.Option(None, help="Site name (env SPINE_DOCS_SITE; default: short host name)."),
    skip_existing: bool = typer.Option(True, "--skip-existing/--no-skip-existing",
                                       help="Skip files whose path, size and mtime are unchanged."),
    workers: Optional[int] = typer.Option(None, min=1, help="Extraction processes (default: CPU count)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Documents per bulk write (default 500)."),
    checksum: Optional[bool] = typer.Option(None, "--checksum/--no-checksum", help="Store a sha256 of each file."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on a terminal."),
) -> None:
    """Index HDF5 files into the catalog."""
    if not source and source_list is None:
        raise fail("nothing to index: give --source GLOB (repeatable) or --source-list FILE")
    settings = Settings.load(db=db, site=site, workers=workers, batch_size=batch_size, checksum=checksum)
    # the tree is walked in a worker process while the catalog opens
    with ingest.Discovery(source, source_list, workers=settings.workers) as found:
        database = open_db(settings, create=True, failover=True)  # a batch waits out an election
        # no bar asked for: rich is not even imported; a silent bar is not called per file
        with _Bar(True) if progress and not as_json else contextlib.nullcontext() as bar:
            report = ingest.inject(database, settings=settings, sources=source, source_list=source_list,
                                   skip_existing=skip_existing, progress=bar if bar and bar.shown else None,
                                   discovery=found)
    if as_json:
        print_json(report.as_dict())
    else:
        for p in report.problems:
            typer.echo(f"error: {p.path}: {p.reason}", err=True)
        typer.echo(f"{store.describe(database)}: {report.summary()}")
    raise typer.Exit(report.exit_code)


@app.command("runs")
@handled
def runs_cmd(db: Optional[str] = DbOpt,
             limit: int = typer.Option(10, "--limit", min=1, help="The newest N runs."),
             as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON.")) -> None:
    """The newest inject runs: state, counts, speed (a killed run shows as interrupted)."""
    settings = Settings.load(db=db)
    database = open_db(settings)
    try:
        runs.reap(database)  # record what we can see; a read-only catalog is only shown
    except store.StoreError:
        pass
    except OperationFailure as exc:  # a reader account (spine_reader) may not mark runs
        if exc.code != 13:           # Unauthorized
            raise
    rows = runs.last(database, limit)
    if as_json:
        print_json(rows)
        return
    table = _table("started", "kind", "site", "state", "indexed", "unchanged", "failed", "files/s", "host", "pid")
    for r in rows:
        c = r.get("counts") or {}
        table.add_row(_cell(r.get("started")), r.get("kind"), r.get("site"), r.get("state"),
                      _cell(c.get("indexed")), _cell(c.get("unchanged")), _cell(c.get("failed")),
                      _cell(r.get("files_per_s")), r.get("host"), _cell(r.get("pid")))
    _print_table(table)
    if not rows:
        typer.echo("no runs yet", err=True)


# --------------------------------------------------------------------------- read back

@app.command()
@handled
def show(path: str = typer.Argument(..., help="File path (or document _id)."),
         db: Optional[str] = DbOpt, site: Optional[str] = typer.Option(None)) -> None:
    """Print the catalog document of one file as JSON."""
    from .extract import doc_id, normalise_path

    settings = Settings.load(db=db, site=site)
    database = open_db(settings)
    doc = database.files.find_one({"_id": path})
    if doc is None:
        norm = normalise_path(path)
        doc = database.files.find_one({"_id": doc_id(settings.site, norm)}) or \
            database.files.find_one({"path": norm})
    if doc is None:
        raise fail(f"not in the catalog: {path}", 1)
    print_json(doc)


def build_filter(where: Optional[str], model: List[str], dataset: List[str], site: List[str],
                 status: List[str], version_min: Optional[str], version_max: Optional[str],
                 run_min: Optional[int], run_max: Optional[int], attr: List[str],
                 path_contains: Optional[str], saved: Optional[str], database: Any) -> Any:
    """The shared Filter from command-line options (a saved query is the starting point)."""
    from . import queries

    try:
        base = queries.load_query(database, saved) if saved else queries.Filter()
    except KeyError:
        names = ", ".join(q["name"] for q in queries.list_queries(database)) or "none saved yet"
        raise fail(f"no saved query named {saved!r} (saved: {names})")
    params = base.model_dump()
    updates: dict[str, Any] = {  # --where's JSON is read by the Filter, as a URL's is
        "where": where or None, "version_min": version_min, "version_max": version_max,
        "run_min": run_min, "run_max": run_max, "path_contains": path_contains,
    }
    for name, values in (("model", model), ("dataset", dataset), ("site", site), ("status", status)):
        if values:
            updates[name] = values
    params.update({k: v for k, v in updates.items() if v is not None})
    if attr:
        types = {a["key"]: a["type"] for a in queries.attribute_keys(database)}
        params["attr_filters"] = list(params.get("attr_filters") or []) + [
            queries.AttrFilter.parse_expr(a, types) for a in attr]
    return queries.Filter(**params)


def open_filtered(ctx: typer.Context, *, archive: bool = False) -> tuple[Settings, Any, Any]:
    """Settings, database and Filter of a command that takes the shared filter options
    (``archive``: the command selects archived documents, see :func:`_lifecycle_options`)."""
    p = ctx.params
    settings = Settings.load(db=p.get("db"))
    database = open_db(settings)
    flt = build_filter(p["where"], p["model"], p["dataset"], p["site"], p["status"],
                       p["version_min"], p["version_max"], p["run_min"], p["run_max"], p["attr"],
                       p["path_contains"], p["saved"], database)
    flt = _lifecycle_options(p, flt, database, archive=archive)
    if p.get("as_of"):
        from .queries import Filter
        flt = Filter(**{**flt.model_dump(), "as_of": p["as_of"]})
    return settings, database, flt


def _now_only(ctx: typer.Context, flt: Any) -> None:
    """A command that changes the catalog acts on it as it is now: these commands take no
    ``--as-of``, and a saved query that has one is refused (exit 2)."""
    if flt.as_of is not None:
        raise fail(f"{ctx.info_name} changes the catalog as it is now: the saved query "
                   f"{ctx.params.get('saved')!r} is as of {flt.as_of:%Y-%m-%d %H:%M:%S}Z "
                   f"(use it with query, facets, attrs or diff)")


def _lifecycle_options(p: dict, flt: Any, database: Any, *, archive: bool = False) -> Any:
    """``--include-retired``, ``--latest-only``, ``--derived-from PATH`` (every descendant) and ``--parent-of
    PATH`` (its resolved parents) on top of a Filter: the two lineage options become a
    condition on the paths the lineage walk finds. With ``archive`` (``restore-files``,
    whose documents are in ``files_archive``) the walk goes through the catalog and the
    archive alike (archived documents keep their ``lineage``; a chain pruned whole is still
    one), and the condition then selects the archived documents among the paths found."""
    from . import lineage
    from .queries import Filter, and_queries

    if p.get("include_retired"):
        flt = flt.model_copy(update={"include_retired": True})
    if p.get("latest_only"):
        flt = flt.model_copy(update={"latest_only": True})
    collections = ("files", "files_archive") if archive else ("files",)
    conditions = []
    if p.get("derived_from"):
        walk = lineage.descendants(database, [p["derived_from"]], collections=collections)
        for c in walk.cycles:
            typer.echo(f"warning: lineage cycle: {' -> '.join(c)}", err=True)
        conditions.append({"path": {"$in": walk.paths}})
    if p.get("parent_of"):
        walk = lineage.ancestors(database, [p["parent_of"]], depth=1, collections=collections)
        conditions.append({"path": {"$in": walk.paths}})
    if conditions:
        flt = Filter(**{**flt.model_dump(), "where": and_queries(flt.where, *conditions)})
    return flt


WhereOpt = typer.Option(None, "--where", help='A MongoDB query as JSON, e.g. \'{"run": {"$gte": 100}}\'.')
ModelOpt = typer.Option([], "--model", help="Model name (repeatable).")
DatasetOpt = typer.Option([], "--dataset", help="Dataset (repeatable).")
SiteFOpt = typer.Option([], "--site", help="Site (repeatable).")
StatusOpt = typer.Option([], "--status", help=f"{', '.join(STATUSES[:-1])} or {STATUSES[-1]} (repeatable).")
VminOpt = typer.Option(None, "--version-min", help="SPINE version >= this (semantic, e.g. 0.5).")
VmaxOpt = typer.Option(None, "--version-max", help="SPINE version <= this.")
RminOpt = typer.Option(None, "--run-min", help="Files holding runs >= this.")
RmaxOpt = typer.Option(None, "--run-max", help="Files holding runs <= this.")
AttrOpt = typer.Option([], "--attr", help="Root attribute condition: 'key>=1.5', 'key~regex', 'key?' "
                       "(repeatable); quote a value to mean that text: key='>5'.")
PathOpt = typer.Option(None, "--path-contains", help="Substring of the path.")
SavedOpt = typer.Option(None, "--saved", help="Start from a saved query.")
RetiredOpt = typer.Option(False, "--include-retired", help="Show retired files too (hidden by default).")
LatestOpt = typer.Option(False, "--latest-only", help="Leave out files a newer version superseded "
                         "(same inputs and config, newer production or SPINE version).")
DerivedOpt = typer.Option(None, "--derived-from", help="Files derived from this file, transitively.")
ParentOpt = typer.Option(None, "--parent-of", help="The files this file was made from.")
AsOfOpt = typer.Option(None, "--as-of", help="The catalog as it stood then (DATE: the end of that day, UTC; "
                       "or an ISO date-time): the files it held, with the values they had. Evaluated "
                       "client-side over every file known then.")


#: the filter options the filtering commands share: name -> (annotation, option), in --help order
FILTER_OPTIONS: dict[str, tuple[str, Any]] = {
    "where": ("Optional[str]", WhereOpt), "model": ("List[str]", ModelOpt),
    "dataset": ("List[str]", DatasetOpt), "site": ("List[str]", SiteFOpt),
    "status": ("List[str]", StatusOpt), "version_min": ("Optional[str]", VminOpt),
    "version_max": ("Optional[str]", VmaxOpt), "run_min": ("Optional[int]", RminOpt),
    "run_max": ("Optional[int]", RmaxOpt), "attr": ("List[str]", AttrOpt),
    "path_contains": ("Optional[str]", PathOpt), "saved": ("Optional[str]", SavedOpt),
    "include_retired": ("bool", RetiredOpt), "latest_only": ("bool", LatestOpt),
    "derived_from": ("Optional[str]", DerivedOpt), "parent_of": ("Optional[str]", ParentOpt),
    "as_of": ("Optional[str]", AsOfOpt),
}


def filter_options(*, include_retired: bool = True, latest_only: bool = True, lineage: bool = True,
                   as_of: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the command takes the shared filter options (:data:`FILTER_OPTIONS`; the
    optional groups as asked), right after its context, but those it declares itself (its
    own ``--site``, say). It reads them through ``ctx.params`` (:func:`open_filtered`): they
    are not passed to it."""
    left_out = {name for name, wanted in (("include_retired", include_retired), ("latest_only", latest_only),
                                          ("derived_from", lineage), ("parent_of", lineage),
                                          ("as_of", as_of)) if not wanted}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        sig = inspect.signature(fn)
        own = list(sig.parameters.values())
        added = {name: spec for name, spec in FILTER_OPTIONS.items()
                 if name not in sig.parameters and name not in left_out}
        extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=opt, annotation=ann)
                 for name, (ann, opt) in added.items()]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **{k: v for k, v in kwargs.items() if k not in added})

        wrapper.__signature__ = sig.replace(parameters=own[:1] + extra + own[1:])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**fn.__annotations__, **{name: ann for name, (ann, _o) in added.items()}}
        return wrapper

    return decorate

def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


def _print_table(table: Any) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a pipe or a file: one line per row, whatever its width
        console = Console(width=100_000)
    console.print(table)


def _cell(value: Any) -> str:
    from datetime import datetime

    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@app.command()
@handled
@filter_options()
def query(
    ctx: typer.Context,
    limit: int = typer.Option(0, "--limit", min=0, help="At most N files (0: all; table default 50)."),
    sort: str = typer.Option("-mtime", help="Sort field, '-' for descending (e.g. -mtime, run, path)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, jsonl, csv or paths."),
    db: Optional[str] = DbOpt,
) -> None:
    """List the files a filter matches (streamed: jsonl, csv and paths export everything)."""
    from . import queries

    settings, database, flt = open_filtered(ctx)
    if fmt != "table":
        if fmt not in queries.EXPORT_FORMATS:
            raise fail(f"unknown --format {fmt!r}: choose table, jsonl, csv or paths")
        export = queries.export
        if flt.as_of is not None:  # the catalog as it stood then, from the history
            from . import asof

            export = asof.export
        for line in export(database, flt, fmt, sort=sort, limit=limit or None):
            sys.stdout.write(line)
        return
    size = limit or 50
    if flt.as_of is not None:  # the history is no index: every file known then, sorted here
        from . import asof

        docs = asof.sorted_documents(database, flt, sort)
        _print_files(docs[:size])
        typer.echo(f"{min(len(docs), size)} of {len(docs)} matching files as of "
                   f"{flt.as_of:%Y-%m-%d %H:%M:%S}Z", err=True)
        return
    page = queries.page(database, flt, sort=sort, size=min(size, queries.MAX_PAGE_SIZE),
                        max_time_ms=settings.query_timeout_ms)
    _print_files(page.rows)
    matched = queries.count(database, flt, max_time_ms=settings.query_timeout_ms)
    typer.echo(f"{len(page.rows)} of {matched} matching files ({queries.total(database)} in the catalog)", err=True)


#: the columns of ``query``'s table
QUERY_COLUMNS = ("path", "site", "spine_version", "model", "dataset", "run", "num_events", "status", "mtime")


def _print_files(rows: Any) -> None:
    table = _table(*QUERY_COLUMNS)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in QUERY_COLUMNS))
    _print_table(table)


@app.command()
@handled
@filter_options()
def facets(
    ctx: typer.Context,
    field: List[str] = typer.Option([], "--field", help="Facet field (repeatable; default site, spine_version, model, dataset, status)."),
    limit: int = typer.Option(20, help="Values per facet."),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
) -> None:
    """Counts per value of the facet fields, under a filter (like the explorer's sidebar)."""
    from . import queries

    settings, database, flt = open_filtered(ctx)
    if flt.as_of is not None:
        from . import asof
        result = asof.facets(database, flt, tuple(field) or queries.DEFAULT_FACETS, limit)
    else:
        result = queries.facets(database, flt, tuple(field) or queries.DEFAULT_FACETS, limit,
                                max_time_ms=settings.query_timeout_ms)
    if as_json:
        print_json(result)
        return
    for name, values in result.items():
        typer.echo(f"{name}:")
        for v in values:
            typer.echo(f"  {v['count']:>8}  {v['value'] if v['value'] is not None else queries.NONE_TOKEN}")


@app.command()
@handled
@filter_options()
def attrs(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
) -> None:
    """The attribute dictionary: every root attribute key, in how many files, with which types."""
    from . import asof, queries

    settings, database, flt = open_filtered(ctx)
    if flt.as_of is not None:
        rows = asof.attribute_dictionary(database, flt)
    else:
        rows = queries.attribute_dictionary(database, flt, max_time_ms=settings.query_timeout_ms)
    if as_json:
        print_json(rows)
        return
    typer.echo(f"{'key':<32} {'files':>7} {'types':<20} {'distinct':>8}  min .. max")
    for r in rows:
        types = ",".join(sorted(r["types"])) if isinstance(r["types"], dict) else str(r["types"])
        typer.echo(f"{r['key'][:32]:<32} {r['files']:>7} {types[:20]:<20} {str(r.get('distinct', '')):>8}  "
                   f"{_cell(r.get('min'))[:30]} .. {_cell(r.get('max'))[:30]}")


# --------------------------------------------------------------------------- lifecycle

def _filter_without_site(ctx: typer.Context, database: Any) -> Any:
    """The Filter of a command whose ``--site`` names the site it acts on (not a facet)."""
    p = ctx.params
    return build_filter(p["where"], p["model"], p["dataset"], [], p["status"], p["version_min"],
                        p["version_max"], p["run_min"], p["run_max"], p["attr"], p["path_contains"],
                        p["saved"], database)


@app.command("verify")
@handled
@filter_options(latest_only=False, as_of=False)
def verify_cmd(
    ctx: typer.Context,
    site: Optional[str] = typer.Option(None, "--site", help="The site whose files are checked "
                                       "(env SPINE_DOCS_SITE; default: short host name)."),
    checksum: bool = typer.Option(False, "--checksum", help="Also re-hash every file whose size and "
                                  "mtime match, and compare with the stored sha256."),
    workers: Optional[int] = typer.Option(None, min=1, help="Threads for stat() on a slow filesystem "
                                          "and for hashing (default 16)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on a terminal."),
    db: Optional[str] = DbOpt,
) -> None:
    """Check that the files of this site still exist as indexed; record missing, changed,
    corrupt (nothing is deleted). Exit 1 when a file is not as indexed.

    Example: spine-docs verify --site nersc --dataset bnb_nu --checksum"""
    from . import verify

    settings = Settings.load(db=db, site=site)
    database = open_db(settings, failover=True)  # a long run: waits out an election
    flt = _lifecycle_options(ctx.params, _filter_without_site(ctx, database), database)
    _now_only(ctx, flt)
    with _Bar(progress and not as_json, "verifying") as bar:
        report = verify.verify(database, site=settings.site, flt=flt, checksum=checksum,
                               workers=workers, progress=bar, keep_versions=settings.keep_versions)
    if as_json:
        print_json(report.as_dict())
    else:
        for p in report.problems:
            typer.echo(f"error: {p.path}: {p.reason}", err=True)
        typer.echo(f"{store.describe(database)} site {report.site}: {report.summary()}")
    raise typer.Exit(report.exit_code)


def _print_paths(paths: List[str], total: int) -> None:
    """The paths a command selected (the first ones: ``total`` in all), one a line."""
    for p in paths:
        typer.echo(f"  {p}")
    if total > len(paths):
        typer.echo(f"  ... and {total - len(paths)} more")


def _print_move(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    _print_paths(report.paths, report.selected)
    for p in report.conflicts:
        typer.echo(f"conflict: {p}: the catalog holds this file again; its archived document stays", err=True)
    typer.echo(report.summary())


@app.command()
@handled
@filter_options(include_retired=False, latest_only=False, as_of=False)
def prune(
    ctx: typer.Context,
    missing_for: Optional[str] = typer.Option(None, "--missing-for", help="Files `verify` found missing at "
                                              "least this long ago: 30d, 12h, 2w (a bare number is days)."),
    retired: bool = typer.Option(False, "--retired", help="Retired files (see `spine-docs retire`)."),
    why: Optional[str] = typer.Option(None, "--why", help="Recorded with each archived document "
                                      "(default: the criterion)."),
    yes: bool = typer.Option(False, "--yes", help="Do it (without it: a dry run that only counts)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: Optional[str] = DbOpt,
) -> None:
    """Move the documents of long-missing or retired files into the archive collection
    (files_archive), with who, when and why; `restore-files` brings them back. A dry run
    unless --yes.

    Example: spine-docs prune --missing-for 30d --site nersc --yes"""
    from . import prune as pruning

    settings, database, flt = open_filtered(ctx)
    _now_only(ctx, flt)
    try:
        age = pruning.parse_age(missing_for) if missing_for is not None else None
        query = pruning.selection(flt, missing_for=age, retired=retired)
    except pruning.PruneError as exc:
        raise fail(str(exc))
    reason = why or "; ".join(([f"missing for {missing_for}"] if missing_for else []) +
                              (["retired"] if retired else []))
    report = pruning.prune(database, query, why=reason, dry_run=not yes,
                           site=ctx.params["site"][0] if len(ctx.params["site"]) == 1 else None)
    _print_move(report, as_json)


@app.command("restore-files")
@handled
@filter_options(include_retired=False, latest_only=False, as_of=False)
def restore_files(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Every archived document."),
    run: Optional[str] = typer.Option(None, "--run", help="What one prune run archived (its run id, "
                                      "see `spine-docs runs`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would come back."),
    derived_from: Optional[str] = typer.Option(None, "--derived-from", help="Archived files derived "
                                               "from this file, transitively (the lineage is followed "
                                               "through archived and catalog documents alike)."),
    parent_of: Optional[str] = typer.Option(None, "--parent-of", help="The archived files this file "
                                            "(archived or not) was made from."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: Optional[str] = DbOpt,
) -> None:
    """Move archived documents (see `prune`) back into the catalog, exactly as they were.
    The filter options select among the archived documents; --all takes every one.

    Example: spine-docs restore-files --path-contains /bnb_nu/"""
    from . import prune as pruning

    settings, database, flt = open_filtered(ctx, archive=True)
    _now_only(ctx, flt)
    if flt.is_empty() and not run and not all_:
        raise fail("say what to restore: filter options, --run RUN_ID, or --all")
    query = pruning.archive_query(flt, run_id=run, at=pruning.archived_at(database, run) if run else None)
    report = pruning.restore(database, query, dry_run=dry_run)
    _print_move(report, as_json)
    raise typer.Exit(1 if report.conflicts else 0)


def _target(ctx: typer.Context, path: Optional[str], *, include_retired: bool) -> tuple[Settings, Any, dict]:
    """The settings, database and query of a command that takes a PATH or the filter options
    (one of them: an empty selection is refused, never "every file")."""
    from .queries import Filter, and_queries

    settings, database, flt = open_filtered(ctx)
    _now_only(ctx, flt)
    if include_retired:
        flt = flt.model_copy(update={"include_retired": True})
    if path is None and flt.is_empty():
        raise fail("say which files: a PATH or filter options (e.g. --model NAME, --where JSON)")
    query = flt.query()
    if path is not None:
        from .extract import normalise_path

        # the files at PATH first (the _id and {path, site} indexes), then the filter on their
        # _ids: an $or beside the filter's conditions is no index's bound (a scan of the catalog)
        at = {"$or": [{"_id": path}, {"path": normalise_path(path)}]}
        query = and_queries(query, {"_id": {"$in": [d["_id"] for d in database.files.find(at, {"_id": 1})]}})
    return settings, database, query


def _print_retire(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    _print_paths(report.paths, report.selected + report.descendants)
    for c in report.cycles:
        typer.echo(f"warning: lineage cycle: {' -> '.join(c)}", err=True)
    typer.echo(report.summary())


@app.command()
@handled
@filter_options(include_retired=False, latest_only=False, as_of=False)
def retire(
    ctx: typer.Context,
    path: Optional[str] = typer.Argument(None, help="A file path (or document _id); or use the filter options."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded with who and when)."),
    with_descendants: bool = typer.Option(False, "--with-descendants", help="Also every file derived "
                                          "from them (lineage), transitively."),
    yes: bool = typer.Option(False, "--yes", help="Do it (without it: a dry run that lists them)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: Optional[str] = DbOpt,
) -> None:
    """Mark files retired (hidden from queries, facets, exports and the explorer unless
    --include-retired). A dry run unless --yes; `unretire` reverses it.

    Example: spine-docs retire --model bad_calib --reason "wrong calibration" --with-descendants --yes"""
    from . import retire as retiring

    if not reason.strip():
        raise fail("--reason must say why")
    settings, database, query = _target(ctx, path, include_retired=False)
    report = retiring.retire(database, query, reason=reason, with_descendants=with_descendants,
                             dry_run=not yes, keep_versions=settings.keep_versions)
    _print_retire(report, as_json)


@app.command()
@handled
@filter_options(include_retired=False, latest_only=False, as_of=False)
def unretire(
    ctx: typer.Context,
    path: Optional[str] = typer.Argument(None, help="A file path (or document _id); or use the filter options."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: Optional[str] = DbOpt,
) -> None:
    """Bring retired files back into queries (the reverse of `retire`)."""
    from . import retire as retiring

    settings, database, query = _target(ctx, path, include_retired=True)
    _print_retire(retiring.unretire(database, query, dry_run=dry_run,
                                    keep_versions=settings.keep_versions), as_json)


@app.command("lineage")
@handled
def lineage_cmd(
    path: str = typer.Argument(..., help="A file path."),
    up: bool = typer.Option(False, "--up", help="What it was made from (the default)."),
    down: bool = typer.Option(False, "--down", help="What was made from it."),
    depth: Optional[int] = typer.Option(None, "--depth", min=1, help="At most N generations."),
    fmt: str = typer.Option("tree", "--format", "-f", help="tree, json or dot."),
    db: Optional[str] = DbOpt,
) -> None:
    """A file's parents (--up) or descendants (--down); cycles are reported, never followed.

    Example: spine-docs lineage /data/prod/reco/f.h5 --down --format dot | dot -Tsvg > f.svg"""
    from . import lineage

    if up and down:
        raise fail("choose --up or --down")
    if fmt not in ("tree", "json", "dot"):
        raise fail(f"unknown --format {fmt!r}: choose tree, json or dot")
    settings = Settings.load(db=db)
    database = open_db(settings)
    walk = (lineage.descendants if down else lineage.ancestors)(database, [path], depth=depth)
    for c in walk.cycles:
        typer.echo(f"warning: lineage cycle: {' -> '.join(c)}", err=True)
    if fmt == "json":
        print_json({"root": walk.root, "direction": "down" if down else "up",
                    "files": [{"path": p, "depth": walk.depth_of.get(p)} for p in walk.paths],
                    "edges": [{"parent": a, "child": b} for a, b in walk.edges],
                    "unresolved": walk.unresolved, "cycles": walk.cycles})
    elif fmt == "dot":
        sys.stdout.write(lineage.render_dot(walk))
    else:
        for line in lineage.render_tree(walk, up=not down):
            typer.echo(line)
    if walk.cycles:
        raise typer.Exit(1)

# --------------------------------------------------------------------------- diff

_STYLES = {"head": "bold", "added": "green", "removed": "red", "changed": "yellow", "": ""}


def _print_lines(lines: List[Any]) -> None:
    """``(style, text)`` lines: coloured on a terminal that has colours, plain otherwise."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for style, text in lines:
        console.print(Text(text, style=_STYLES.get(style, "") if console.color_system else ""))


@app.command("diff")
@handled
def diff_cmd(
    a: Optional[str] = typer.Argument(None, help="A file: path or _id; PATH@N (version N) or PATH@DATE (as of that day)."),
    b: Optional[str] = typer.Argument(None, help="The file to compare A with (same forms)."),
    left: Optional[str] = typer.Option(None, "--left", help="Set diff: the left files, a saved query's name or "
                                       "filter terms, e.g. 'dataset=mpvmpr_v1,prod_version=v2'."),
    right: Optional[str] = typer.Option(None, "--right", help="Set diff: the right files (same forms)."),
    match_on: str = typer.Option("input", "--match-on", help="Set diff: pair files by their input file ('input') "
                                 "or by a field an index sorts by (name, run, path, fingerprint, ...)."),
    examples: int = typer.Option(3, "--examples", min=0, max=100, help="Set diff: examples per differing key."),
    fmt: str = typer.Option("text", "--format", "-f", help="text or json."),
    site: Optional[str] = typer.Option(None, "--site", help="Site of a path given without one (default: any)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Set diff: both sets as the catalog held them "
                                        "then (DATE: the end of that day, UTC; or an ISO date-time)."),
    left_as_of: Optional[str] = typer.Option(None, "--left-as-of", help="Set diff: the left set as of then "
                                             "(overrides --as-of for that side)."),
    right_as_of: Optional[str] = typer.Option(None, "--right-as-of", help="Set diff: the right set as of then."),
    db: Optional[str] = DbOpt,
) -> None:
    """What changed between two files, two versions of one file, or two sets of files.

    spine-docs diff /data/v2/f.h5 /data/v3/f.h5;  spine-docs diff /data/f.h5@1 /data/f.h5;
    spine-docs diff --left 'dataset=mpvmpr_v1,prod_version=v2' --right 'dataset=mpvmpr_v1,prod_version=v3';
    spine-docs diff --left prod_version=v2 --left-as-of 2026-11-01 --right prod_version=v2
    """
    from . import diff as docdiff, setdiff

    if fmt not in ("text", "json"):
        raise fail(f"unknown --format {fmt!r}: choose text or json")
    sets = left is not None or right is not None
    if sets and (a is not None or b is not None):
        raise fail("give two files (A B) or two sets (--left FILTER --right FILTER), not both")
    if sets and (left is None or right is None):
        raise fail("a set diff needs both --left and --right")
    if not sets and (a is None or b is None):
        raise fail("give two files to compare (A B), or two sets with --left and --right")
    if not sets and (as_of or left_as_of or right_as_of):
        raise fail("--as-of, --left-as-of and --right-as-of are for a set diff; a file as of a date is PATH@DATE")
    settings = Settings.load(db=db)
    database = open_db(settings)
    if sets:
        from .queries import Filter

        try:
            sides = []
            for text, when in ((left, left_as_of or as_of), (right, right_as_of or as_of)):
                flt = setdiff.side_filter(database, text)
                if when:
                    flt = Filter(**{**flt.model_dump(), "as_of": when})
                sides.append((flt, text if flt.as_of is None else f"{text} as of {flt.as_of:%Y-%m-%d %H:%M:%S}Z"))
            result = setdiff.compare_sets(database, sides[0][0], sides[1][0], match_on=match_on,
                                          left_text=sides[0][1], right_text=sides[1][1], examples=examples)
        except setdiff.SetDiffError as exc:
            raise fail(str(exc))
        if fmt == "json":
            print_json(result.as_dict())
        else:
            _print_lines(setdiff.text_lines(result))
        return
    try:
        da, db_ = docdiff.resolve(database, a, site=site), docdiff.resolve(database, b, site=site)
    except docdiff.DiffError as exc:
        raise fail(str(exc), 1)
    d = docdiff.diff_documents(da, db_, ref_a=a, ref_b=b)
    if fmt == "json":
        print_json(d)
    else:
        _print_lines(docdiff.text_lines(d))


# --------------------------------------------------------------------------- demo / app

@app.command()
@handled
def demo(files: int = typer.Option(200, min=1, help="How many sample files to generate."),
         dir: Optional[Path] = typer.Option(None, "--dir", help="Where to write them (default .spine_docs/demo)."),
         db: Optional[str] = DbOpt,
         no_app: bool = typer.Option(False, "--no-app", help="Do not start the explorer."),
         port: int = typer.Option(8501, min=1, max=65535, help="Explorer port.")) -> None:
    """Generate SPINE-like sample files, index them, and start the explorer."""
    from . import samples

    settings = Settings.load(db=db)
    target = dir or settings.home / "demo"
    paths = samples.write_prod_tree(target, files, seed=0)
    typer.echo(f"wrote {len(paths)} sample files under {target}")
    database = open_db(settings, create=True)
    with _Bar(True) as bar:
        report = ingest.inject(database, settings=settings, sources=[str(target)], progress=bar)
    typer.echo(f"{store.describe(database)}: {report.summary()}")
    if no_app:
        typer.echo(f"explore it with: spine-docs app --db {settings.db_url}")
        return
    _run_app(settings.db_url, "127.0.0.1", port)


@app.command("app")
@handled
def app_cmd(db: Optional[str] = DbOpt, host: str = typer.Option("127.0.0.1", help="Address to listen on."),
            port: int = typer.Option(8501, min=1, max=65535, help="Port to listen on.")) -> None:
    """Start the Streamlit explorer."""
    settings = Settings.load(db=db)
    open_db(settings)  # fail fast, one line (and create nothing: the explorer only reads)
    _run_app(settings.db_url, host, port)


def _check_port(host: str, port: int) -> None:
    """One clear line now rather than Streamlit's traceback later: a port we cannot listen on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}")
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _run_app(db_url: str, host: str, port: int) -> None:
    """Become the Streamlit server (exec, not a child process: whoever stops this process,
    Ctrl-C or kill, stops the explorer; nothing is left serving the port)."""
    from .resources import app_dir

    _check_port(host, port)
    entry = app_dir() / "explorer.py"
    env = dict(os.environ, SPINE_DOCS_DB=db_url)
    cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    typer.echo(f"explorer on http://{host}:{port}  (Ctrl-C to stop)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


# --------------------------------------------------------------------------- migrate
# `spine-docs migrate ...`: the migration tool's commands (spine_docs.migrate does the work).
# MIGRATE-SECTION-START
from . import migrate as mig  # noqa: E402  (the section is self-contained)

migrate_app = typer.Typer(
    help="Upgrade the catalog schema safely: status, check, plan, up, down, stamp, history, ...",
    no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")

SchemaFileOpt = typer.Option(None, "--schema-file", help="schema.json (default: the shipped one). "
                             "Env: SPINE_DOCS_SCHEMA_FILE")
MigDirOpt = typer.Option(None, "--migrations-dir", help="Migrations directory (default: the shipped "
                         "one). Env: SPINE_DOCS_MIGRATIONS_DIR")
BackupDirOpt = typer.Option(None, "--backup-dir", help="Where backups go (default: <home>/backups, "
                            "i.e. .spine_docs/backups).")
KeepOpt = typer.Option(None, "--keep", min=1, help="Keep the N newest backups (never the newest good one).")
LockWaitOpt = typer.Option(30.0, "--lock-wait", min=0, help="Seconds to wait for another migration's lock.")


def _mig_handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The migration tool's expected errors: one line on stderr, exit 2 (nothing was done)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except mig.RestoreError as exc:
            raise fail(str(exc), 1 if exc.changed else 2)
        except (mig.MigrationError, mig.LockError, mig.MigrationScriptError, mig.BackupError,
                schema.SchemaError) as exc:
            if isinstance(exc, schema.SchemaMismatch):
                raise
            raise fail(str(exc))

    return handled(wrapper)


def _mig_open(db: Optional[str], schema_file: Optional[Path] = None,
              migrations_dir: Optional[Path] = None, *, create: bool = False) -> tuple[Settings, Any]:
    settings = Settings.load(db=db, schema_file=schema_file, migrations_dir=migrations_dir)
    return settings, open_db(settings, create=create, failover=True)


def _mig_paths(settings: Settings) -> dict:
    return {"schema_file": settings.schema_file, "migrations_dir": settings.migrations_dir}


def _backup_root(settings: Settings, override: Optional[Path]) -> Path:
    return Path(override) if override is not None else settings.home / "backups"


def _one_json(value: Any) -> str:
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS)


def _warn(lines: List[str]) -> None:
    for w in lines:
        typer.echo(f"warning: {w}", err=True)


@migrate_app.command("status")
@_mig_handled
def migrate_status(db: Optional[str] = DbOpt, schema_file: Optional[Path] = SchemaFileOpt,
                   migrations_dir: Optional[Path] = MigDirOpt,
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Database and code versions, pending migrations, lock holder, drift, changed files."""
    import dataclasses

    settings, database = _mig_open(db, schema_file, migrations_dir)
    st = mig.status(database, **_mig_paths(settings))
    if as_json:
        out = dataclasses.asdict(st)
        out["drift"] = [dict(dataclasses.asdict(d), blocking=d.blocking) for d in st.drift]
        print_json(out)
        return
    typer.echo(f"database:  {store.describe(database)}")
    typer.echo(f"version:   database {st.db_version}, code {st.code_version}" + (" (empty)" if st.empty else ""))
    typer.echo("pending:   " + ("none" if not st.pending else ""))
    for p in st.pending:
        typer.echo(f"  {p.name}: {p.description}")
    typer.echo(f"lock:      {st.lock_text}")
    summary = ", ".join(f"{k}: {n}" for k, n in st.drift_summary.items())
    typer.echo(f"drift:     {summary or 'none'}")
    for d in st.drift:
        typer.echo(f"  - {d}" + ("" if d.blocking else " (not declared; left alone)"))
    for c in st.changed:
        typer.echo(f"changed:   {c.name} (applied as {c.recorded[:12]}, file is now {c.current[:12]}): "
                   f"review, then `spine-docs migrate ack {c.version}`")
    if st.last_failure:
        f = st.last_failure
        typer.echo(f"last failure: {f['name']} at {_cell(f['started'])}: {f['error']}")


@migrate_app.command("check")
@_mig_handled
def migrate_check(db: Optional[str] = DbOpt, schema_file: Optional[Path] = SchemaFileOpt,
                  migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Exit 0 when the database is current and matches schema.json; 1 otherwise (CI, init containers)."""
    settings, database = _mig_open(db, schema_file, migrations_dir)
    r = mig.check(database, **_mig_paths(settings))
    _warn(r.warnings)
    if r.ok:
        typer.echo(f"ok: database version {r.db_version} matches this spine-docs and schema.json")
    for p in r.problems:
        typer.echo(f"problem: {p}", err=True)
    raise typer.Exit(r.exit_code)


def _print_command(c: dict) -> None:
    """What a command does, then the command itself as mongosh would take it."""
    from .migrate.ops import describe_command

    typer.echo(f"  {describe_command(c)}")
    typer.echo(f"    {_one_json(c)}")


def _print_plan(p: Any) -> None:
    if p.empty:
        typer.echo(f"nothing to do (database at version {p.from_version})")
    else:
        typer.echo(f"plan: {p.direction} {p.from_version} -> {p.to_version}")
        typer.echo(f"backup: {p.backup}")
        for s in p.steps:
            typer.echo(f"{s.name} ({s.direction}): {s.description}")
            if s.commands is None:
                typer.echo("  (no plan(): its code runs as written)")
            for c in s.commands or []:
                _print_command(c)
        if p.direction == "up":
            typer.echo("reconcile with schema.json:" + ("" if p.reconcile else " nothing"))
            for c in p.reconcile:
                _print_command(c)
        if p.stamp is not None:
            typer.echo(f"then: set the database schema version to {p.stamp}")
    for n in p.notes:
        typer.echo(f"note: {n}")
    if p.blocked:
        typer.echo(f"BLOCKED: {p.blocked}", err=True)
        raise typer.Exit(1)


@migrate_app.command("plan")
@_mig_handled
def migrate_plan(db: Optional[str] = DbOpt, to: Optional[int] = typer.Option(None, "--to", help="Target version."),
                 down: bool = typer.Option(False, "--down", help="Plan a `down --to N`."),
                 no_backup: bool = typer.Option(False, "--no-backup"), backup_dir: Optional[Path] = BackupDirOpt,
                 schema_file: Optional[Path] = SchemaFileOpt, migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Print every command `up` (or `down`) would send; changes nothing, not even bookkeeping."""
    settings, database = _mig_open(db, schema_file, migrations_dir)
    if down and to is None:
        raise fail("plan --down needs --to N")
    p = mig.plan(database, to=to, direction="down" if down else "up", backup=not no_backup,
                 db_url=settings.db_url, backup_root=_backup_root(settings, backup_dir), **_mig_paths(settings))
    _print_plan(p)


def _print_run(r: Any) -> None:
    _warn(r.warnings)
    if r.backup_note:
        typer.echo(f"backup: {r.backup_note}")
    for s in r.steps:
        typer.echo(f"  {s.name}: {s.state} in {s.duration_s:.2f}s" + (f": {s.error}" if s.error else ""))
    if r.reconciled:
        typer.echo(f"  reconciled with schema.json: {len(r.reconciled)} command(s)")
    if r.backup is not None and r.backup.rotated:
        typer.echo(f"  rotated out {len(r.backup.rotated)} old backup(s)")
    typer.echo(r.message, err=not r.ok)
    raise typer.Exit(r.exit_code)


@migrate_app.command("up")
@_mig_handled
def migrate_up(db: Optional[str] = DbOpt, to: Optional[int] = typer.Option(None, "--to", help="Target version (default: the code's)."),
               no_backup: bool = typer.Option(False, "--no-backup", help="Do not back up first (no restore on failure)."),
               backup_dir: Optional[Path] = BackupDirOpt, keep: Optional[int] = KeepOpt,
               lock_wait: float = LockWaitOpt,
               dry_run: bool = typer.Option(False, "--dry-run", help="Same as `migrate plan`."),
               schema_file: Optional[Path] = SchemaFileOpt, migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Back up, then apply pending migrations and reconcile with schema.json (a fresh database is initialised)."""
    settings, database = _mig_open(db, schema_file, migrations_dir, create=not dry_run)
    root = _backup_root(settings, backup_dir)
    if dry_run:
        _print_plan(mig.plan(database, to=to, backup=not no_backup, db_url=settings.db_url,
                             backup_root=root, **_mig_paths(settings)))
        return
    _print_run(mig.up(database, to=to, backup=not no_backup, db_url=settings.db_url, backup_root=root,
                      keep=keep, lock_wait_s=lock_wait, **_mig_paths(settings)))


@migrate_app.command("down")
@_mig_handled
def migrate_down(to: int = typer.Option(..., "--to", help="Version to go back to."), db: Optional[str] = DbOpt,
                 no_backup: bool = typer.Option(False, "--no-backup"), backup_dir: Optional[Path] = BackupDirOpt,
                 keep: Optional[int] = KeepOpt, lock_wait: float = LockWaitOpt,
                 dry_run: bool = typer.Option(False, "--dry-run", help="Same as `migrate plan --down --to N`."),
                 schema_file: Optional[Path] = SchemaFileOpt, migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Undo applied migrations down to version N (backed up first, like `up`)."""
    settings, database = _mig_open(db, schema_file, migrations_dir, create=not dry_run)
    root = _backup_root(settings, backup_dir)
    if dry_run:
        _print_plan(mig.plan(database, to=to, direction="down", backup=not no_backup, db_url=settings.db_url,
                             backup_root=root, **_mig_paths(settings)))
        return
    _print_run(mig.down(database, to=to, backup=not no_backup, db_url=settings.db_url, backup_root=root,
                        keep=keep, lock_wait_s=lock_wait, **_mig_paths(settings)))


@migrate_app.command("stamp")
@_mig_handled
def migrate_stamp(version: int = typer.Argument(..., help="The version the database already has."),
                  db: Optional[str] = DbOpt, schema_file: Optional[Path] = SchemaFileOpt,
                  migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Record the database's version without running anything (adopt an existing database)."""
    settings, database = _mig_open(db, schema_file, migrations_dir, create=True)
    r = mig.stamp(database, version, **_mig_paths(settings))
    _warn(r.warnings)
    typer.echo(f"stamped version {r.final_version} (was {r.from_version})")


@migrate_app.command("history")
@_mig_handled
def migrate_history(db: Optional[str] = DbOpt, limit: int = typer.Option(0, "--limit", min=0, help="Only the newest N."),
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every recorded step: version, checksum, when, who, host, duration, state, error."""
    import dataclasses

    settings, database = _mig_open(db)
    entries = mig.history(database, limit=limit or None)
    if as_json:
        print_json([dataclasses.asdict(e) for e in entries])
        return
    if not entries:
        typer.echo("no migration history")
    for e in entries:
        dur = f"{e.duration_s:.2f}s" if e.duration_s is not None else "-"
        typer.echo(f"{e.version:>4}  {e.name:<40} {e.direction:<9} {e.state:<11} {(e.checksum or '')[:12]:<12} "
                   f"{_cell(e.started)}  {e.user}@{e.host} pid {e.pid}  {dur}" + (f"  {e.error}" if e.error else ""))


@migrate_app.command("new")
@_mig_handled
def migrate_new(slug: str = typer.Argument(..., help='What it does, e.g. "add detector index".'),
                schema_file: Optional[Path] = SchemaFileOpt, migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Scaffold the next migrations/NNNN_<slug>.py and bump schema_version in schema.json."""
    from .resources import migrations_dir as shipped_migrations, schema_file as shipped_schema

    settings = Settings.load(schema_file=schema_file, migrations_dir=migrations_dir)
    path, version = mig.new_migration(slug, settings.migrations_dir or shipped_migrations(),
                                      schema_file=settings.schema_file or shipped_schema())
    typer.echo(f"created {path} (version {version}); schema.json schema_version is now {version}")


@migrate_app.command("ack")
@_mig_handled
def migrate_ack(versions: List[int] = typer.Argument(None, help="Versions to accept (default: every changed one)."),
                db: Optional[str] = DbOpt, schema_file: Optional[Path] = SchemaFileOpt,
                migrations_dir: Optional[Path] = MigDirOpt) -> None:
    """Accept the edited file of an applied migration (after reviewing the change)."""
    settings, database = _mig_open(db, schema_file, migrations_dir, create=True)
    acked = mig.acknowledge(database, list(versions or []) or None, **_mig_paths(settings))
    _warn(acked.warnings)
    for c in acked:
        typer.echo(f"acknowledged {c.name}")
    if not acked:
        typer.echo("no changed migration files")


@migrate_app.command("unlock")
@_mig_handled
def migrate_unlock(db: Optional[str] = DbOpt,
                   force: bool = typer.Option(False, "--force", help="Required: the holder must be gone.")) -> None:
    """Remove the migration lock left by a process that is gone."""
    settings, database = _mig_open(db, create=True)
    holder = mig.unlock(database, force=force)
    typer.echo(f"removed the lock held by {mig.describe_holder(holder)}" if holder else "the lock was free")


@migrate_app.command("backup")
@_mig_handled
def migrate_backup(db: Optional[str] = DbOpt,
                   out: Optional[Path] = typer.Option(None, "--out", help="Backups directory (default: .spine_docs/backups)."),
                   keep: Optional[int] = KeepOpt) -> None:
    """Take a verified backup now (mongodump when installed for a server, else built-in; same layout)."""
    settings, database = _mig_open(db, create=True)
    b = mig.backup(database, out=_backup_root(settings, out), db_url=settings.db_url, keep=keep)
    _warn(b.warnings)
    typer.echo(f"backup {b.path} ({b.method}, {b.documents} documents in {len(b.collections)} collections, verified)")
    for p in b.rotated:
        typer.echo(f"rotated out {p}")


@migrate_app.command("restore")
@_mig_handled
def migrate_restore(from_dir: Path = typer.Option(..., "--from", help="A backup directory."),
                    db: Optional[str] = DbOpt) -> None:
    """Put a backup back (collections created since are dropped; the migration history is kept).
    Also restores an embedded catalog that no longer loads, or into a new directory."""
    settings = Settings.load(db=db)
    r = mig.restore_url(settings.db_url, from_dir, timeout_ms=settings.connect_timeout_ms)
    _warn(r.warnings)
    typer.echo(f"restored {len(r.restored)} collections ({r.documents} documents) from {r.path}"
               + (f"; dropped {', '.join(r.dropped)}" if r.dropped else ""))

# MIGRATE-SECTION-END


# --------------------------------------------------------------------------- backup
# `spine-docs backup`: the nightly backup (cron), while inject jobs may be writing.

@app.command("backup")
@_mig_handled
def backup_cmd(db: Optional[str] = DbOpt,
               out: Optional[Path] = typer.Option(None, "--out", help="Backups directory (default: .spine_docs/backups)."),
               keep: Optional[int] = KeepOpt,
               lock_wait: float = LockWaitOpt) -> None:
    """Take a verified backup now, safe while inject jobs write (not during a migration: it
    takes the migration lock). Restore it with `spine-docs migrate restore --from DIR`.

    Example (cron, nightly): `spine-docs backup --db "$URL" --out /backups/spine_docs --keep 7`"""
    settings, database = _mig_open(db)
    b = mig.backup(database, out=_backup_root(settings, out), db_url=settings.db_url, keep=keep, live=True,
                   lock_wait_s=lock_wait)
    _warn(b.warnings)
    typer.echo(f"backup {b.path} ({b.method}, {b.documents} documents in {len(b.collections)} collections, verified)")
    for p in b.rotated:
        typer.echo(f"rotated out {p}")


# --------------------------------------------------------------------------- doctor
# `spine-docs doctor`: spine_docs.doctor reads and renders; this only parses and prints.

@app.command("doctor")
@_mig_handled
def doctor_cmd(db: Optional[str] = DbOpt,
               explain: bool = typer.Option(False, "--explain", help="Ask the server for the plan of every "
                                            "query shape on the live data (explain executionStats); exit 1 "
                                            "on a COLLSCAN the allow-list does not name."),
               selftest: bool = typer.Option(False, "--selftest", help="Prove every capability in a scratch "
                                             "database <db>_selftest_<random>, removed afterwards."),
               largest_full_scan: bool = typer.Option(False, "--largest-full-scan", help="Find the largest "
                                                      "document by reading every one (server; default: a "
                                                      "random sample of 1,000)."),
               runs_limit: int = typer.Option(5, "--runs", min=0, help="How many of the newest ingest runs."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Check a catalog before and after an upgrade: server, schema, indexes, validators, lock,
    runs, counts, largest document, query plans. Exit 1 when a problem is found."""
    from . import doctor

    settings = Settings.load(db=db)
    url = settings.db_url
    if "://" not in url and not Path(url).expanduser().is_dir():
        raise fail(f"no embedded catalog at {url} (give --db, or run `spine-docs setup` first)")
    database = open_db(settings, failover=True)  # before and after an upgrade: waits out an election
    report = doctor.diagnose(database, explain=explain, full_scan=largest_full_scan, runs_limit=runs_limit,
                             max_time_ms=settings.query_timeout_ms, schema_file=settings.schema_file,
                             migrations_dir=settings.migrations_dir)
    if not as_json:
        for line in doctor.render(report, all_plans=explain):
            typer.echo(line)
    test = None
    if selftest:
        if not as_json:
            typer.echo("\nSelf-test (in a scratch database, removed afterwards)")
        progress = None if as_json else (lambda r: typer.echo(doctor.capability_line(r)))
        try:
            test = doctor.selftest(database, db_url=url, progress=progress)
        except doctor.DoctorError as exc:
            raise fail(str(exc))
        if not as_json:
            for line in doctor.render_selftest(test, lines=False)[2:]:
                typer.echo(line)
    if as_json:
        print_json({**report.as_dict(), "selftest": test.as_dict() if test else None})
    raise typer.Exit(max(report.exit_code, test.exit_code if test else 0))


# --------------------------------------------------------------------------- roles / users
# `spine-docs roles ...`, `spine-docs users ...`: access control on a server (spine_docs.access).
# ACCESS-SECTION-START
roles_app = typer.Typer(help="Database roles with least privilege: spine_reader, spine_writer, spine_admin.",
                        no_args_is_help=True)
users_app = typer.Typer(help="Users of the catalog's database (a server with access control).",
                        no_args_is_help=True)
app.add_typer(roles_app, name="roles")
app.add_typer(users_app, name="users")


@roles_app.command("setup")
@handled
def roles_setup(db: Optional[str] = DbOpt) -> None:
    """Create (or bring up to date) spine_reader, spine_writer and spine_admin in the catalog's
    database. Run it as the server's user administrator, e.g.
    `SPINE_DOCS_USER=root SPINE_DOCS_PASSWORD_FILE=secrets/root spine-docs roles setup --db 'mongodb://host/spine_docs?authSource=admin'`."""
    settings = Settings.load(db=db)
    access.require_server_url(settings.db_url, "roles")
    database = open_db(settings, failover=True)
    for name, verb in access.setup_roles(database):
        typer.echo(f"{verb} role {name} in {store.describe(database)}")


@roles_app.command("show")
def roles_show(database: str = typer.Option(store.DEFAULT_DB, "--database", help="The catalog's database name.")) -> None:
    """Print the createRole commands `roles setup` sends (nothing is contacted)."""
    print_json(access.role_commands(database))


@users_app.command("add")
@handled
def users_add(name: str = typer.Argument(..., help="The user name."),
              role: str = typer.Option(..., "--role", help="reader (the explorer), writer (inject) or admin (setup, migrate)."),
              password_file: Optional[Path] = typer.Option(None, "--password-file",
                                                           help="Read the new user's password from this file (mode 600); default: a prompt."),
              password: Optional[str] = typer.Option(None, "--password", hidden=True),
              db: Optional[str] = DbOpt) -> None:
    """Create a user with one of the three roles (or update its password and role). The
    password is typed at a prompt or read from --password-file, never given as an argument."""
    if password is not None:
        raise fail("a password on the command line is seen by other users (ps, shell history): "
                   "type it at the prompt, or use --password-file FILE")
    if role not in access.ROLE_OF:
        raise fail(f"unknown --role {role!r}: choose reader, writer or admin")
    settings = Settings.load(db=db)
    access.require_server_url(settings.db_url, "users")
    database = open_db(settings, failover=True)
    access.require_server(database, "users")
    secret = (access.read_password_file(password_file) if password_file is not None
              else typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True))
    verb = access.add_user(database, name, role, secret)
    typer.echo(f"{verb} user {name} ({access.ROLE_OF[role]}) in {store.describe(database)}")

# ACCESS-SECTION-END


def _terminated(signum: int, frame: Any) -> None:
    # SIGTERM (kill, a batch system's time limit) unwinds like Ctrl-C: worker processes are
    # stopped and the run is logged as interrupted instead of staying "running"
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[List[str]] = None) -> None:
    """The ``spine-docs`` entry point: usage errors are one line on stderr (exit 2), as every
    other error is; a SIGTERM unwinds like Ctrl-C."""
    import atexit
    import gc
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    # at exit, what is still there is left to the OS instead of being collected object by
    # object (the imported modules' cycles: a tenth of a second or more)
    atexit.register(gc.freeze)
    try:
        rv = app(args=argv, prog_name="spine-docs", standalone_mode=False)
    except typer.TyperException as exc:  # Typer's (vendored click's) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"spine-docs: {exc.format_message()}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("spine-docs: aborted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
