"""The explorer's small pure helpers (no Streamlit run needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
import pandas as pd  # noqa: E402

from app import explorer_ui as ui  # noqa: E402


def test_files_without_a_value_are_labelled_none_even_after_pandas():
    # pandas turns a None among strings into NaN: the legend must not read "nan"
    frame = pd.DataFrame([{"group": None}, {"group": "mpvmpr"}], columns=["group", "absent"])
    labels = [ui.facet_label(v) for v in list(frame["group"]) + list(frame["absent"])]
    assert labels == ["(none)", "mpvmpr", "(none)", "(none)"]
    assert ui.facet_label(0) == "0" and ui.facet_label("nan") == "nan"
