"""``bulk_write``'s operation builder, accepting what pymongo >= 4.11 passes."""

from __future__ import annotations

from mongomock import collection as mm_collection


class BulkBuilder(mm_collection.BulkOperationBuilder):
    """Accepts the ``sort`` argument pymongo >= 4.11 passes (mongomock issue 912)."""

    def add_update(self, selector, doc, multi=False, upsert=False, collation=None,
                   array_filters=None, hint=None, sort=None):
        if sort:
            raise NotImplementedError("UpdateOne(sort=...) is not supported by the mongomock shim")
        return super().add_update(selector, doc, multi=multi, upsert=upsert, collation=collation,
                                  array_filters=array_filters, hint=hint)

    def add_replace(self, selector, doc, upsert, collation=None, hint=None, sort=None):
        if sort:
            raise NotImplementedError("ReplaceOne(sort=...) is not supported by the mongomock shim")
        return super().add_replace(selector, doc, upsert, collation=collation, hint=hint)

