"""The leaderboard page in a real browser: Debian's headless Chromium driven by Selenium.

Checks that the table and both plots render, that clicking headers sorts rows correctly, that a
cluster expands into its tasks, and that the page logs no errors. A screenshot is kept as an
artifact: under pytest's tmp dir and copied to $TASKMILL_ARTIFACTS (default tests/artifacts/,
which ignores its own contents).

Needs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from taskmill.eval.leaderboard.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium"

_spec = importlib.util.spec_from_file_location("leaderboard_runs", Path(__file__).with_name("leaderboard_runs.py"))
lr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lr)


def _artifacts_dir() -> Path:
    folder = Path(os.environ.get("TASKMILL_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("TASKMILL_ARTIFACTS"):
        (folder / ".gitignore").write_text("*\n")  # keep screenshots out of git
    return folder


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI"):  # CI installs Chromium (.ci/run): a skip there would hide a broken page
            pytest.fail(f"CI must run the browser test, but Chromium is missing: {INSTALL}")
        pytest.skip(f"headless Chromium and its driver are not installed: {INSTALL}")
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed: {INSTALL}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    runs = lr.loco_runs(root, models=("alpha", "beta"))
    write_report([str(runs)], root / "board")
    return root / "board"


def _labels(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#board-zero_shot tbody tr')).map(r => r.dataset.row);")


def _header(driver, col: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#board-zero_shot thead th[data-col="{col}"]')


def test_page_renders_sorts_expands_and_is_screenshotted(driver, board_dir, tmp_path):
    from selenium.webdriver.common.by import By

    board = json.loads((board_dir / "leaderboard.json").read_text())
    cells = board["scores"]["zero_shot"]
    driver.get((board_dir / "leaderboard.html").as_uri())
    assert driver.title == "taskmill leaderboard"

    # Table: every row present, ranked by mean (best first).
    by_mean = sorted(cells, key=lambda label: -cells[label]["mean"]["score"])
    assert _labels(driver) == by_mean
    # Plots: both images decoded with a real size and visible.
    images = driver.find_elements(By.CSS_SELECTOR, "figure.plot img")
    assert len(images) == 2
    for img in images:
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", img) > 100
        assert img.size["width"] > 100 and img.size["height"] > 100

    # Sorting: text A-Z then Z-A; a cluster column best first.
    _header(driver, "model").click()
    assert _labels(driver) == sorted(cells)
    _header(driver, "model").click()
    assert _labels(driver) == sorted(cells, reverse=True)
    _header(driver, "cluster:qa").click()
    assert _labels(driver) == sorted(cells, key=lambda label: (-cells[label]["clusters"]["qa"]["score"], label))
    header = _header(driver, "cluster:qa")
    assert header.get_attribute("aria-sort") == "descending"
    _header(driver, "cluster:qa").click()
    qa = [cells[label]["clusters"]["qa"]["score"] for label in _labels(driver)]
    assert qa == sorted(qa) and header.get_attribute("aria-sort") == "ascending"
    # Δ column: base rows have no delta and stay last.
    _header(driver, "delta").click()
    assert [cells[label]["delta"] is None for label in _labels(driver)] == [False, False, True, True]

    # Drill-down: the sentiment cluster's task columns appear when expanded.
    task_head = _header(driver, "task:yelp")
    assert not task_head.is_displayed()
    _header(driver, "cluster:sentiment").find_element(By.TAG_NAME, "button").click()
    assert task_head.is_displayed() and _header(driver, "task:imdb").is_displayed()
    assert _header(driver, "cluster:sentiment").get_attribute("aria-sort") is None  # the button does not sort
    assert not _header(driver, "task:rte").is_displayed()

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert [url for url in fetched if not url.startswith("data:")] == []  # self-contained: nothing fetched
    shot = tmp_path / "leaderboard.png"
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1400, min(4000, height + 120))  # the whole page in one picture
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    shutil.copy(shot, _artifacts_dir() / "leaderboard.png")
