"""The spine-docs explorer (Streamlit entry point): ``spine-docs app [--db URL]``.

Declares the pages (``views/*.py``) and runs the chosen one. Each page starts with
``explorer_ui.bootstrap()``: the URL is reconciled with the view state, the catalog named by
``SPINE_DOCS_DB`` is opened (one clear message and nothing else when it is down, wrong, of
another schema version or empty) and the sidebar is drawn (catalog, Refresh, the filter with
facet counts). Pages only render what ``spine_docs.queries`` returns.
"""

from __future__ import annotations

import streamlit as st
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

PAGES = [
    st.Page("views/files.py", title="Files", icon=":material/table_view:", default=True),  # at /
    st.Page("views/export.py", title="Export", icon=":material/download:", url_path="export"),
    st.Page("views/analytics.py", title="Analytics", icon=":material/bar_chart:", url_path="analytics"),
    st.Page("views/attributes.py", title="Attributes", icon=":material/schema:", url_path="attributes"),
    st.Page("views/replicas.py", title="Replicas", icon=":material/content_copy:", url_path="replicas"),
    st.Page("views/saved.py", title="Saved queries", icon=":material/bookmark:", url_path="saved"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


page = st.navigation(PAGES)
try:
    page.run()
except ConnectionFailure as exc:  # the server went away between two queries of a page
    st.error(f"The database stopped answering: {_first_line(exc)}. Reload the page to retry.")
except OperationFailure as exc:  # it answers, but refused (queries' own refusals are per panel)
    st.error(f"The database refused a request: {_first_line(exc)}")
except PyMongoError as exc:
    st.error(f"Database error: {_first_line(exc)}")
