"""The in-memory engine: mongomock 4.3 made fast, storing documents as BSON bytes.

It serves ``mongomock://`` databases and the embedded catalog (:mod:`spine_docs.store`); the
real-server path never sees it. It imports nothing from the rest of spine_docs, and the
rest of spine_docs uses only its public names (``__all__`` below): :mod:`spine_docs.dumpfmt`
reads collections with :func:`raw_documents`, the embedded catalog persists the stores.

Modules, one concern each: :mod:`.rawbson` (BSON bytes: partial decoding, splicing, leaf
patches), :mod:`.deps` (which fields a query reads), :mod:`.updates` (fast update plans),
:mod:`.keys` (hashable equality keys, unique-index entries), :mod:`.sorting` (native sort
keys, top-k), :mod:`.conditions` (a filter condition decided from one value),
:mod:`.aggregation` (pipeline stages over a stream), :mod:`.expressions`
(aggregation expressions compiled once), :mod:`.columns` (the column cache and the reads it
serves), :mod:`.collector` (pausing the garbage collector), :mod:`.stores`
(collection/database/server stores), :mod:`.collection`, :mod:`.cursor`, :mod:`.bulk`,
:mod:`.database` (Database and Client).

What the engine changes relative to plain mongomock 4.3, and why
    This is the one list: every change has a reason, a mongomock bug or speed (measured).
    Each item names, in brackets, the tests in ``tests/test_shim.py`` that hold it: the same
    operations on the engine and on plain ``mongomock.MongoClient()`` give the same results
    (or, for a deliberate difference, the result a MongoDB server gives), and a work counter
    shows the problem on plain mongomock and its absence on the engine. Change an item and
    its tests together.

    * ``Cursor.__next__`` copied the whole result list on every call (iteration and every
      ``aggregate()`` quadratic): the engine's cursor streams.
      [test_cursor_iteration_is_linear, test_cursor_behaviour]
    * ``find()`` deep-copied every stored document: the engine stores documents as **BSON
      bytes** (memory ~ the BSON size, not 5-7x that as Python objects) and decodes only the
      top-level fields a query needs (filter, projection, sort, pipeline dependencies),
      fully only when the whole document is returned. Decoding makes fresh objects, so
      callers still cannot mutate the store. Decoding a few top-level fields walks the BSON
      element headers and decodes only the wanted elements (one C call).
      [test_rescan_projection_does_not_copy_documents,
      test_find_decodes_each_returned_document_once,
      test_delete_and_count_decode_only_what_they_need, test_returned_documents_are_copies,
      test_inserted_documents_are_not_aliased, test_store_holds_bson_not_python_objects,
      test_find_results_are_mongomocks]
    * unique indexes made ``insert_many`` quadratic and upserts by a non-``_id`` filter were
      full scans: unique indexes are hash maps (built with the index, or after a load when
      a write or lookup first needs them - a write that changes no field a unique index
      reads does not -, then maintained on every write); ``_id`` and unique-key equality
      lookups are O(1). [test_insert_many_with_unique_index_does_not_scan,
      test_unique_indexes_are_enforced, test_partial_unique_index,
      test_upsert_by_unique_key_is_a_lookup,
      test_a_write_that_no_unique_index_reads_builds_no_unique_maps]
    * a filter ``{field: "text"}`` on a top-level field decides string values by ``==``
      without calling mongomock's filter (anything else, arrays included, is mongomock's).
      [test_equality_on_a_string_field_matches_as_mongomock]
    * ``aggregate()``: stages that work one document at a time (``$match``, ``$project``,
      ``$addFields``/``$set``, ``$unwind``, ``$replaceRoot``, ``$limit``, ``$skip``) stream,
      ``$group``/``$count`` consume the stream, a leading ``$match`` uses the lookups above;
      ``$unwind`` no longer deep-copies the unwound array once per element; ``$group`` keys
      and accumulators of the common shapes are compiled once.
      [test_aggregation_decodes_only_the_fields_it_uses,
      test_a_leading_match_uses_the_id_and_unique_lookups,
      test_unwind_does_not_copy_the_array_per_element,
      test_group_streams_instead_of_holding_unwound_documents,
      test_aggregate_results_are_mongomocks]
    * sorts (``find().sort()``, ``$sort``, ``$group``'s output order) compared documents
      pair by pair through ``BsonComparable``: the engine computes one native key per
      document (BSON type rank, then the value; objects and arrays element by element), one
      key for all sort fields (a descending field of a mixed-direction sort as minus its
      rank), and keeps only the first ``skip + limit`` with a heap when a limit is given
      (also ``$sort`` followed by ``$limit``). Values without a native key (tz-aware dates,
      code with a scope, DBRefs, ``uuid.UUID`` objects made by a pipeline) fall back to
      pairwise comparison under the same rules.
      [test_sorts_of_mixed_types_are_a_servers, test_find_results_are_mongomocks,
      test_aggregate_results_are_mongomocks,
      test_a_value_without_a_native_key_sorts_by_the_same_rule]
    * sort order, deliberately a server's where mongomock's was not (MongoDB's
      "Comparison/Sort Order"): a field holding an array sorts by its smallest element
      ascending and by its largest descending (mongomock: by its first element), an array
      inside it being one element compared as an array, an empty array below null and
      missing; a path through an array of documents sorts by the values it reaches (null
      for a document lacking the field); binary data by length, then subtype, then bytes
      (mongomock ignored the subtype); NaN below every number (mongomock: no consistent
      place); timestamps, regular expressions, MinKey and MaxKey in their BSON places
      (mongomock raised), JavaScript code after regular expressions (mongomock: among the
      strings). [test_sort_order_is_the_servers,
      test_plain_mongomock_sorts_differently, test_the_oracle_follows_the_documented_rule]
    * every read of the whole collection decoded the same few top-level fields of every
      document again (the explorer's sidebar alone: five passes, ~25 us per document each):
      the first such read of a collection state builds a **column cache** - one walk of
      every document (one C call each), keeping each top-level field whose values are all
      immutable scalars (str, int, float, bool, null, date, ObjectId, Int64, Decimal128) or
      missing as a list aligned with the stored documents (a field holding an embedded
      document or an array in some document is no column) - and later reads use it until
      any write changes the collection's ``version`` (writes never build it; a reload drops
      it). Filter conditions on columns (and on paths through embedded documents down to
      scalars, ``attrs.k``, built on first use) are decided on the column values by
      mongomock's rules, restated for ``==``, ``$eq``/``$ne``/``$in``/``$nin``/``$exists``
      and ranges within one type and asked of mongomock's filter once per distinct value
      otherwise; the other conditions are mongomock's on the documents that passed.
      ``find().sort()`` by columns sorts the column keys and decodes only the documents
      returned; ``$group`` keyed by null, ``"$f"`` or an object of such paths with
      accumulators of constants or fields (facet counts, replica keys, run coverage) groups
      the column values without documents (a ``$sum`` of a column without decimals adds
      each group's numbers with ``sum()`` as mongomock does, without its per-group call); ``$sort`` + ``$limit`` chooses on the columns and
      decodes only the chosen. Cost: about a quarter of the BSON size in memory (strings of
      a field with few distinct values are kept once), and the first read of a state pays
      the walk (~1 s of CPU at 50,000 catalog documents).
      [test_columns: test_reads_are_those_of_mongomock_and_of_the_plain_scan,
      test_reads_after_writes_see_the_writes, test_the_second_read_decodes_nothing,
      test_returned_documents_cannot_change_the_cache]
    * the column cache's build (one decode of every document, ~0.8 s of CPU at 50,000
      catalog documents) was paid by the first read of every process that opened a
      collection: a persister (the embedded catalog, :mod:`spine_docs.store.columnfile`)
      sets ``CollectionStore.columns_file`` for the state it loaded or saved; the first read
      of that state restores the columns from its payload (``columns.dump``/``restore``:
      ~0.1 s, checked for consistency, None - a build - when it is not) or builds them and
      hands them to it. ``CollectionStore.drift`` records the top-level fields writes
      changed in place (names and order kept: the leaf updates above) since a state and
      ``CollectionStore.appended`` the documents inserted since, any other write
      (replacement, splice, delete, expiry) ending it, so that a save can tell the columns
      did not change, or changed only by the inserted documents: then it merges the
      persisted columns with a build of only those (``columns_extended``: what a build of
      all of them makes; an inject of new files keeps the file current).
      [test_columnfile: test_restored_columns_are_the_built_ones,
      test_reads_on_restored_columns_are_the_plain_scans,
      test_a_write_in_place_to_no_column_carries_the_file_over,
      test_a_write_in_place_to_a_raw_column_carries_the_rest_over,
      test_a_payload_with_a_bad_raw_column_is_refused, test_inserts_keep_the_file_current,
      test_inserts_whose_merge_declines_drop_the_file,
      test_inserts_keep_the_strings_kept_once_as_a_build_would,
      test_other_writes_drop_the_file]
    * a field holding an embedded document in every document that has it (``attrs``,
      ``attr_types``) was no column, so every read of it walked each document's field
      headers in Python (the attribute dictionary of all files at 50,000 catalog documents:
      ~0.7 s of its 1.8 s of CPU): the column cache keeps such a field's values as their
      BSON bytes (a **raw column**: one copy of each distinct value, the bytes the build's C
      decoder hands over anyway) while its distinct values take at most
      ``columns.RAW_MAX_BYTES`` (2 MiB, a fixed bound); documents are made from
      it with one C decode, a path column through it (``attrs.num_events``) decodes each
      distinct value once, and the persisted cache holds it (a save after writes in place
      to such a field keeps the file without that raw column). A ``$project`` that only
      computes fields, reading nothing but columns and raw columns, right after the
      ``$match`` or after a ``$sort`` + ``$limit`` chosen on the columns (the attribute
      dictionary's, of all or of the newest files) is evaluated once per distinct tuple of the
      values it reads (with their types: ``1``, ``1.0`` and ``true`` apart; floats and
      decimals not remembered), each document getting its own copy (1.8 s -> 0.15 s of CPU
      at 50,000 catalog documents, whose ``attr_types`` files of one production share).
      [test_columns: test_small_embedded_documents_are_kept_raw,
      test_reads_are_those_of_mongomock_and_of_the_plain_scan,
      test_conditions_on_paths_through_documents]
    * ``$sort`` right before ``$group`` is skipped on the column cache when it cannot change
      the result: ``_id: "$f"`` by the same ``f``, accumulators of constants (``$sum: 1``).
      Every member then adds the same value, and the documents a group gathers have equal
      sort keys (equal group keys are equal values; null and missing sort alike), so a
      stable sort keeps them in natural order and the first - whose value is the group's
      ``_id`` - is the same; a server leaves ``$group``'s output order unspecified anyway,
      and the engine orders it by ``_id`` in any case. Not when a value has no native sort
      key or is NaN. Accumulators of fields (``$first``, float sums: order matters) keep
      the sort.
      [test_columns: test_reads_are_those_of_mongomock_and_of_the_plain_scan,
      test_facet_counts_with_equal_values_of_different_types]
    * aggregation expressions (``$group`` keys and accumulators, a ``$project`` that only
      computes fields) were parsed by mongomock for every document: they are compiled once
      into closures restating mongomock's parser for the operators the catalog's pipelines
      use (``$cond``, ``$ifNull``, ``$and``/``$or``/``$not``, comparisons, ``$in``,
      ``$isNumber``, arithmetic, ``$dateToString``, ``$toString``, ``$objectToArray``,
      ``$arrayElemAt``, ``$let``, ``$map``, ``$filter``, ``$literal``), any other through
      mongomock's parser; ``$match`` after the first stage no longer runs mongomock's whole
      pipeline machinery per document, and decides rows of plain values (``{count: {$gt:
      1}}`` after a ``$group``) with the column cache's restated conditions.
      [test_expressions: test_compiled_expressions_are_mongomocks_parser,
      test_pipelines_with_compiled_expressions_are_mongomocks]
    * Python's garbage collector traversed every container alive (the column cache:
      millions of references) every few hundred allocations: it is paused while the engine
      builds the cache, groups on it or materialises a pipeline's output (run coverage at
      50,000 files: 2.1 s of CPU with it, 0.7 s without).
      [test_columns: test_reads_are_those_of_mongomock_and_of_the_plain_scan]
    * updates: ``$set``/``$setOnInsert`` of a plain field is an assignment (mongomock
      encoded and copied each value; the document is encoded once afterwards, with the same
      validation), and so are ``$set``/``$setOnInsert``/``$inc``/``$push`` (``$each``,
      ``$slice``) of paths through embedded documents when the types are plain (numbers for
      ``$inc``, an array for ``$push``) and no two paths overlap; anything else goes to
      mongomock's updater. An upsert by ``_id`` touches one document; ``update_many`` by
      ``{_id: {$in: [...]}}`` looks each value up instead of walking the collection. An
      operator update whose operators only change the paths they name (``$set``, ``$inc``,
      ``$push``, ``$unset``, ...; not ``$rename``, pipelines or replacements) decodes only
      the top-level fields it touches (plus the filter's), applies mongomock's update to
      that partial document and splices the re-encoded fields into the stored bytes (same
      bytes as encoding the whole updated document; unique indexes are not re-read when
      they use none of those fields). An update made only of ``$set``/``$inc`` of plain
      values (strings, numbers, booleans, dates, null) on paths that exist through embedded
      documents (a re-scan's "seen again") is written into the stored bytes without
      decoding the document; a top-level ``$set`` field the document lacks (a supersede
      mark) is appended to them, without even walking them when its name is nowhere in
      the bytes. [test_field_updates_give_mongomocks_documents,
      test_top_level_fields_a_document_lacks_are_appended_in_the_stored_bytes,
      test_a_missing_field_that_is_not_a_plain_set_goes_the_general_way,
      test_writes_give_mongomocks_documents,
      test_ingest_updates_do_not_go_through_mongomocks_field_updater,
      test_paths_that_overlap_are_left_to_mongomock,
      test_bulk_upserts_by_id_cost_does_not_grow_with_the_collection,
      test_update_many_by_ids_looks_ids_up_instead_of_walking_the_collection,
      test_field_updates_reencode_only_the_fields_they_touch, test_splice_equals_a_whole_encode,
      test_leaf_updates_write_into_the_stored_bytes, test_update_semantics]
    * ``insert_one``/``insert_many`` take a ``RawBSONDocument`` as pymongo does (mongomock
      refused it) and store its bytes as they are. [test_raw_documents_can_be_inserted]
    * TTL expiry walked the collection on every access: it runs at most once a second per
      collection (``CollectionStore.ttl_interval_s``).
      [test_ttl_expiry_does_not_walk_the_collection_on_every_access,
      test_ttl_expiry_runs_at_most_once_per_interval]
    * ``bulk_write`` of ``UpdateOne``/``ReplaceOne`` with pymongo >= 4.11 raised
      ``TypeError: unexpected keyword argument 'sort'`` (mongomock issue 912).
      [test_bulk_write_accepts_pymongo_operations]
    * validators, collection options, ``collMod``, ``listCollections`` and index options
      (collation, partialFilterExpression, wildcard, text, hidden, ...) are accepted and
      **recorded** (``list_collections()``, ``index_information()``, the dump's
      ``.metadata.json``; mongomock refused validators). ``Database.command`` answers
      ``create``, ``collMod``, ``listCollections``, ``listIndexes``, ``createIndexes``,
      ``dropIndexes``, ``drop``, ``count``, ``dbStats``, ``collStats``, ``ping``,
      ``buildInfo`` and ``hello``; any other command raises ``NotImplementedError``.
      [test_validators_and_options_are_recorded_not_enforced, test_index_options_are_recorded,
      test_database_commands_answer]
    * deliberate differences from plain mongomock, all towards what a real server does:
      ``_id`` is stored first; ``nModified`` compares BSON bytes (``1`` -> ``1.0`` is a
      modification); a failed update leaves the document untouched (mongomock kept the
      operators applied before the failing one); ``create_index`` refuses the same keys and
      options under another name (code 85, IndexOptionsConflict) and another index under
      an existing name (code 86, IndexKeySpecsConflict, as MongoDB >= 5.0); a read served
      by the column cache decides the filter's conditions on columns first, so a condition
      mongomock cannot evaluate on some document (comparing a Decimal128, an unknown
      operator) raises only if a document that passed the column conditions reaches it (a
      server raises in neither case; mongomock raises when its evaluation, in the filter's
      order, reaches it).
      [test_deliberate_differences_from_mongomock_are_the_servers, test_update_semantics,
      test_unique_indexes_are_enforced]

Where the engine knowingly differs from a real MongoDB server
    [test_known_differences_from_a_server pins the engine's side of each item it can]
    * sorts follow a server's order (the item above) except: a document in which two sort
      fields both hold arrays is keyed by each field's smallest/largest element on its own,
      where a server refuses parallel arrays (``BadValue: cannot sort with keys that are
      parallel arrays``) and pairs two paths through one array (``a.x``, ``a.y``) element by
      element; a path through an array resolves as mongomock's (elements that are not
      documents are skipped; a server's key generation may differ there); ties keep the
      natural order (a server promises none); ``$group``'s output comes sorted by ``_id``
      (mongomock's; a server's order is unspecified).
    * ``create_index`` with the keys of an existing index under another name and with other
      options creates a second index; a server refuses it (code 85) when the options that
      tell indexes apart (collation, partialFilterExpression, unique, sparse) are the same.
    * validators (and ``validationLevel``/``validationAction``) are recorded, never
      enforced; ``bypass_document_validation`` is therefore moot.
    * collation is recorded, never applied: unique keys compare binary; ``find(collation=)``
      is accepted and ignored; updates, deletes and ``count_documents`` with one raise
      ``NotImplementedError``.
    * no query planner: only ``_id`` and unique indexes are used (as hash lookups); every
      other index is recorded, never built, so other queries scan the collection (or its
      column cache);
      ``find(hint=)`` is ignored, updates and deletes with ``hint`` raise.
    * no time limits: ``maxTimeMS``/``max_time_ms`` are accepted and ignored, nothing is
      ever interrupted.
    * no sessions or transactions (most methods refuse a ``session``, ``find`` ignores it),
      no change streams, no views (``viewOn``), no ``explain()``, no ``$text`` queries; the
      aggregation stages and operators mongomock lacks raise ``NotImplementedError``.
    * no 16 MB document limit: a larger document is stored (a server refuses it).
    * TTL indexes: expired documents are deleted when the collection is next read, at most
      once a second per collection (a server: a background pass every 60 s).
    * one in-memory copy: write concerns and read preferences are accepted and mean nothing.
    * the rest is mongomock's: what it lacks or does differently, the engine does too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .collection import Collection
from .columns import PERSIST_FORMAT as COLUMNS_FORMAT
from .columns import dump as _dump_columns
from .columns import extend as _extend_columns
from .columns import without_raw as columns_without_raw
from .database import Client, Database
from .rawbson import raw_fields, raw_id
from .stores import CollectionStore, DatabaseStore

__all__ = ["COLUMNS_FORMAT", "Client", "CollectionStore", "DatabaseStore", "columns_extended",
           "columns_of_base", "columns_payload", "columns_without_raw",
           "database_store", "raw_documents", "raw_fields", "raw_id"]


def columns_payload(store: CollectionStore, version: int) -> bytes | None:
    """The column cache of ``store`` persisted (what ``store.columns_file.read()`` hands
    back to restore it) when it is current and of state ``version``; None otherwise."""
    cols = store.columns
    if cols is None or not cols.is_current(store) or cols.version != version:
        return None
    return _dump_columns(cols)


def columns_of_base(store: CollectionStore) -> bytes | None:
    """The column cache this process built of state ``store.drift_base`` persisted, when it
    is still held (writes since then leave it stale, never changed): what a save can bring
    up to date, as it would the file of that state (see ``store/columnfile.py``)."""
    cols = store.columns
    if cols is None or store.drift is None or cols.version != store.drift_base:
        return None
    return _dump_columns(cols)


def columns_extended(store: CollectionStore, payload: bytes, n_old: int) -> bytes | None:
    """The column cache of ``store``'s present state persisted, made from ``payload`` (the
    persisted columns of state ``store.drift_base``, of ``n_old`` documents) and a build of
    only the documents inserted since (``store.appended``), when every other write since
    changed fields in place (``store.drift``) that are no columns; None otherwise."""
    if store.drift is None or not store.appended:
        return None
    items = store.raw_items()
    if len(items) != n_old + store.appended:
        return None
    cols = _extend_columns(payload, [k for k, _r in items], [r for _k, r in items], n_old,
                           store.drift)
    return None if cols is None else _dump_columns(cols)


def database_store(db: Any) -> DatabaseStore | None:
    """The store behind the engine database ``db`` (one per database, shared by every view
    of it: ``with_options``, ``client[name]``, ``collection.database``), where whoever
    opened it sets ``opened_by`` and ``label``; None for any other database (a server's, plain
    mongomock's)."""
    return db._store if isinstance(db, Database) else None


def raw_documents(collection: Any) -> Iterator[bytes] | None:
    """The BSON bytes of the documents of an engine collection, in natural order (a
    snapshot: later writes do not change what it yields); None for any other collection."""
    if not isinstance(collection, Collection):
        return None
    return (raw for _key, raw in collection._store.raw_items())
