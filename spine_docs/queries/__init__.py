"""Every filter and aggregation pipeline of spine-docs.

The CLI (``spine-docs query/facets/attrs/export``) and the Streamlit explorer call these plain
functions; they only parse, print and render. Every function takes a pymongo ``Database`` (a
real server, ``mongomock://`` or the embedded catalog; the ``files`` collection itself is
accepted too) and plain parameters, and returns plain Python data.

Pipelines are built by pure ``*_pipeline()`` / ``*_query()`` functions (no database) and run by
the executors next to them, so ``tests/test_operators.py`` can check that every stage and
operator we emit is supported by both mongomock 4.3 and MongoDB 6.0.

Functions take ``flt=None`` for every file; ``max_time_ms`` becomes ``maxTimeMS`` on a server
and is not passed to mongomock; exceeding it raises :class:`QueryTimeout`. A parameter that
cannot be used raises :class:`QueryError` (a ``ValueError``).

Import everything from here (``from spine_docs.queries import Filter``); the modules, one
concept each, with their docstrings as the reference of their functions:

- ``errors``: :class:`QueryError`, :class:`QueryTimeout`
- ``values``: user text -> BSON values (:func:`coerce_value`, :func:`parse_datetime`) and the
  Extended JSON / date text the other modules write
- ``filters``: :class:`Filter`, :class:`AttrFilter` and the table of attribute operators
  (``ATTR_OP_TABLE``), the URL-parameter form, :func:`and_queries`
- ``_run``: the runtime every executor shares (collection of a ``db`` argument, ``find`` /
  ``aggregate`` with server options, time limits -> :class:`QueryTimeout`, projections)
- ``counts``: :func:`count`, :func:`total`, :func:`facets`, :func:`lifecycle_counts`
- ``pages``: sorts, cursors, :func:`page`, :func:`iter_pages`, :func:`get_file`
- ``exporting``: :func:`export` (jsonl, csv, paths)
- ``analytics``: :func:`timeline`, :func:`histogram`, :func:`run_coverage`
- ``dictionary``: :func:`attribute_keys`, :func:`attribute_types`, :func:`attribute_dictionary`
- ``copies``: :func:`replicas`
- ``saved``: :func:`save_query`, :func:`list_queries`, :func:`load_query`, :func:`delete_query`

(``exporting`` and ``copies`` are not called ``export`` and ``replicas``, and ``count`` and
``facets`` live in ``counts``, so that no module hides behind the function it exports.)
"""

from __future__ import annotations

from .analytics import (
    HISTOGRAM_FIELDS, MAX_RUN_SPAN, TIME_FIELDS, TIMELINE_GROUPS, histogram, histogram_pipeline,
    histogram_stats_pipeline, run_coverage, run_coverage_pipeline, timeline, timeline_pipeline,
)
from .copies import REPLICA_COLUMNS, REPLICA_KEYS, replicas, replicas_pipeline
from .counts import (
    DEFAULT_FACETS, LIFECYCLE_COUNTED, count, count_queries, facets, facets_pipelines, lifecycle_counts,
    lifecycle_pipelines, retired_pipeline, total,
)
from .dictionary import (
    ORDERED_TYPES, attribute_dictionary, attribute_dictionary_pipeline, attribute_keys,
    attribute_keys_pipeline, attribute_types,
)
from .errors import QueryError, QueryTimeout
from .exporting import EXPORT_COLUMNS, EXPORT_FORMATS, export, export_header
from .filters import (
    ATTR_OP_TABLE, ATTR_OPS, FACET_FIELDS, FORBIDDEN_OPERATORS, NONE_TOKEN, NOT_RETIRED, NOT_SUPERSEDED,
    PARAM_KEYS,
    QUERY_OPERATORS, AttrFilter, AttrOp, Filter, and_queries,
)
from .pages import (
    DEFAULT_SORT, ESCAPED_SUBDOCUMENTS, MAX_PAGE_SIZE, SORT_FIELDS, TABLE_COLUMNS, TIE_BREAKERS,
    Page, decode_cursor, encode_cursor, format_sort, get_file, iter_pages, page, page_query,
    parse_sort, sort_spec, tie_breaker, unescape_document,
)
from ._run import FILES
from .saved import SAVED_QUERIES, delete_query, list_queries, load_query, save_query
from .values import coerce_value, parse_datetime

__all__ = [
    # errors
    "QueryError", "QueryTimeout",
    # values
    "coerce_value", "parse_datetime",
    # filters
    "ATTR_OP_TABLE", "ATTR_OPS", "FACET_FIELDS", "FORBIDDEN_OPERATORS", "NONE_TOKEN",
    "NOT_RETIRED", "NOT_SUPERSEDED", "PARAM_KEYS", "QUERY_OPERATORS", "AttrFilter", "AttrOp", "Filter", "and_queries",
    # collections
    "FILES", "SAVED_QUERIES",
    # counts
    "DEFAULT_FACETS", "LIFECYCLE_COUNTED", "count", "count_queries", "total", "facets", "facets_pipelines",
    "lifecycle_counts", "lifecycle_pipelines", "retired_pipeline",
    # pages
    "DEFAULT_SORT", "ESCAPED_SUBDOCUMENTS", "MAX_PAGE_SIZE", "SORT_FIELDS", "TABLE_COLUMNS",
    "TIE_BREAKERS", "Page", "decode_cursor", "encode_cursor", "format_sort", "get_file",
    "iter_pages", "page", "page_query", "parse_sort", "sort_spec", "tie_breaker",
    "unescape_document",
    # exporting
    "EXPORT_COLUMNS", "EXPORT_FORMATS", "export", "export_header",
    # analytics
    "HISTOGRAM_FIELDS", "MAX_RUN_SPAN", "TIME_FIELDS", "TIMELINE_GROUPS", "histogram",
    "histogram_pipeline", "histogram_stats_pipeline", "run_coverage", "run_coverage_pipeline",
    "timeline", "timeline_pipeline",
    # dictionary
    "ORDERED_TYPES", "attribute_dictionary", "attribute_dictionary_pipeline", "attribute_keys",
    "attribute_keys_pipeline", "attribute_types",
    # copies
    "REPLICA_COLUMNS", "REPLICA_KEYS", "replicas", "replicas_pipeline",
    # saved
    "delete_query", "list_queries", "load_query", "save_query",
]
