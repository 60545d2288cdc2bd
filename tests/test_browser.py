"""End to end: ``spine-docs app`` on 127.0.0.1 driven by headless Chromium.

Builds an embedded catalog from sample files, starts the explorer with the real CLI in a
subprocess, loads the Files page, clicks a facet, checks that the filtered count and the URL
follow, selects a row to open the detail panel (its lineage graph drawn as SVG), saves a
screenshot, and reloads the URL. Needs Debian's ``chromium`` and ``chromium-driver`` (CI's
``.ci/run`` installs them) and selenium; skipped without them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from spine_docs import ingest, queries, samples, store
from spine_docs.queries import Filter
from spine_docs.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver",
                           "/usr/lib/chromium/chromedriver") if p and os.path.exists(p)), None)
START_TIMEOUT_S = 40
WAIT_S = 20
HEADER_PX, ROW_PX = 35, 32   # the table's header and row heights (row_height in views/files.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"spine-docs app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the explorer did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def driver(tmp_path):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions", "--no-first-run",
                "--window-size=1600,1500", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(DRIVER), options=options)
    drv.set_page_load_timeout(WAIT_S)
    yield drv
    drv.quit()


@pytest.fixture
def explorer(tmp_path):
    """``spine-docs app`` on a free port of 127.0.0.1 serving a fresh embedded catalog."""
    catalog = tmp_path / "catalog"
    samples.write_prod_tree(tmp_path / "prod", 40, seed=4)
    db = store.connect(str(catalog))
    ingest.inject(db, settings=Settings.load(env={}, site="ci", workers=1),
                  sources=[str(tmp_path / "prod")])
    port = _free_port()
    log = tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_DOCS_")}
    env.update(SPINE_DOCS_HOME=str(tmp_path / "home"), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                           env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spine_docs.cli", "app", "--db", str(catalog),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield f"http://127.0.0.1:{port}", db, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _metric(drv, label: str) -> str | None:
    """The value of the st.metric labelled ``label`` (None while it is not drawn)."""
    from selenium.webdriver.common.by import By

    for box in drv.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        try:
            if box.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip() == label:
                return box.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
        except Exception:  # noqa: BLE001 - the element was redrawn meanwhile
            return None
    return None


def _wait(drv, predicate, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(drv, WAIT_S, poll_frequency=0.2).until(lambda d: predicate(d))
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"timed out waiting for {what}") from exc


def test_files_page_facet_click_in_chromium(driver, explorer, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, db, log = explorer
    total = queries.total(db)
    dataset = queries.facets(db, Filter())["dataset"][0]
    expected = queries.count(db, Filter(dataset=[dataset["value"]]))
    assert 0 < expected < total

    driver.get(base + "/")
    _wait(driver, lambda d: _metric(d, "Matching files") == f"{total:,}", "the unfiltered count")
    assert _metric(driver, "In the catalog") == f"{total:,}"
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'), "the table")

    label = f"{dataset['value']} · {dataset['count']:,}"
    sidebar = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    pill = _wait(driver, lambda d: next((b for b in sidebar.find_elements(By.TAG_NAME, "button")
                                         if b.text.strip() == label), None), f"the facet pill {label!r}")
    pill.click()

    _wait(driver, lambda d: _metric(d, "Matching files") == f"{expected:,}", "the filtered count")
    _wait(driver, lambda d: f"dataset={dataset['value']}" in d.current_url, "the filter in the URL")

    # selecting the first row (its checkbox, drawn on the grid's canvas) opens the detail panel
    first = queries.page(db, Filter(dataset=[dataset["value"]]), size=1).rows[0]
    time.sleep(0.5)  # the table is redrawn with the filtered rows
    grid = driver.find_element(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    box = grid.rect
    ActionChains(driver).move_to_element_with_offset(
        grid, -box["width"] / 2 + 15, -box["height"] / 2 + HEADER_PX + ROW_PX / 2).click().perform()
    panel = _wait(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, ".st-key-detail")), None),
                  "the detail panel")
    _wait(driver, lambda d: "file=" in d.current_url, "the selected file in the URL")
    _wait(driver, lambda d: first["path"] in panel.text.replace("\n", ""), "the file's path in the panel")
    # its lineage graph (the sample files name their inputs: at least one box and an edge) is drawn as SVG
    assert (db.files.find_one({"path": first["path"]}).get("lineage") or {}).get("parents")
    chart = ".st-key-detail .st-key-lineage_graph [data-testid='stGraphVizChart'] svg"
    svg = _wait(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, chart)), None),
                "the lineage graph's SVG in the detail panel")
    _wait(driver, lambda d: svg.find_elements(By.CSS_SELECTOR, "g.edge"), "an edge in the lineage graph")
    time.sleep(0.5)  # let the panel finish drawing before the picture
    shot = tmp_path / "files-page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("SPINE_DOCS_SCREENSHOT_DIR"):  # keep it, e.g. as a CI artifact
        shutil.copy(shot, Path(os.environ["SPINE_DOCS_SCREENSHOT_DIR"]) / shot.name)

    # the URL is the view: loading it in a fresh page shows the same filtered count
    driver.get(driver.current_url)
    _wait(driver, lambda d: _metric(d, "Matching files") == f"{expected:,}", "the count after a reload")
    assert "Traceback" not in log.read_text(errors="replace")
