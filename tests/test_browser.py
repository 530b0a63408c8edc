"""A browser test: JupyterLab runs jnf_toy_posteriors, and its explorer redraws on a change.

JupyterLab is started from this environment on a temporary copy of ``notebooks/`` (a temporary
``REPRO_ROOT`` with a copy of ``pyproject.toml``, so figures and runs land there and the
committed notebooks are never touched), without ``REPRO_HEADLESS`` so the explorer shows its
live widgets, with ``REPRO_CACHE`` in a temporary folder and one torch thread. Debian's
chromium, driven headless by selenium through Debian's ``chromium-driver``, opens the notebook,
clears its committed outputs (Edit menu), runs all cells (Run menu), waits until every code cell
has run and the kernel is idle, changes the explorer's first dropdown and checks that the image
in the explorer's Output changed. Screenshots (the page after Run All, the figure, the explorer
before and after) go to ``runs/browser/`` (git-ignored) and their paths are printed.

Skipped, with the reason, when chromium, chromedriver or selenium is missing. Run it alone with
``.venv/bin/python -m pytest tests/test_browser.py -s``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "jnf_toy_posteriors.ipynb"
SHOTS = REPO / "runs" / "browser"
WINDOW = (1366, 1400)  # Lab's notebook panel about 1,050 px wide; tall enough for the figure
RUN_TIMEOUT = 600  # s: the quick run takes about a minute on one busy CPU core
START_TIMEOUT = 120  # s: Lab's server answering, the notebook opened

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
if not HAVE_SELENIUM:
    pytest.skip(
        "selenium is not importable (pip install -c constraints.txt -e '.[test]')",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# Lab's user settings for this run: no news toast over the page, and every cell kept in the
# page (no windowing), so the cells and their outputs can be read from the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# The kernel of the current notebook and its cells, read from Lab's application object.
KERNEL_STATE_JS = """
const app = window.jupyterapp;
if (!app) { return null; }
const panel = app.shell.currentWidget;
if (!panel || !panel.sessionContext || !panel.content) { return null; }
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = [];
for (const cell of panel.content.widgets) {
  if (cell.model.type === 'code') { cells.push(cell.model.executionCount); }
}
return {status: kernel ? kernel.status : null, counts: cells};
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_root(tmp: Path) -> Path:
    """A temporary REPRO_ROOT: the pyproject and a copy of the notebooks and their references."""
    root = tmp / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy2(nb, root / "notebooks" / nb.name)
    if (REPO / "notebooks" / "reference").is_dir():
        shutil.copytree(REPO / "notebooks" / "reference", root / "notebooks" / "reference")
    return root


def _lab_env(tmp: Path, root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REPRO_HEADLESS", None)  # the explorer shows its widgets
    settings = tmp / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value), encoding="utf-8")
    env.update(
        REPRO_ROOT=str(root),
        REPRO_CACHE=str(tmp / "cache"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
        IPYTHONDIR=str(tmp / "ipython"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    return env


@pytest.fixture(scope="module")
def lab():
    """JupyterLab on a free localhost port; yields (base url, token); stopped on teardown."""
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.skip(f"no jupyter next to {sys.executable}")
    tmp = Path(tempfile.mkdtemp(prefix="repro-browser-"))
    root = _lab_root(tmp)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", "--ServerApp.port_retries=0",
        f"--notebook-dir={root / 'notebooks'}", "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "wb")  # noqa: SIM115 (closed in the teardown)
    proc = subprocess.Popen(
        cmd, cwd=root, env=_lab_env(tmp, root), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {proc.returncode}:\n{_tail(tmp / 'lab.log')}"
                )
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer within {START_TIMEOUT} s:\n"
                        f"{_tail(tmp / 'lab.log')}"
                    ) from None
                time.sleep(0.5)
        yield url, token, tmp
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """Stop Lab and its kernels: SIGTERM to its process group, SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Debian's chromedriver; quit on teardown."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
    ):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, name: str, element=None) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    if element is None:
        driver.save_screenshot(str(path))
    else:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.screenshot(str(path))
    print(f"screenshot: {path}")  # noqa: T201 (the test reports where its screenshots are)
    return path


def _click_menu(driver, wait: WebDriverWait, menu: str, item: str) -> None:
    """Lab's menu bar: open ``menu`` and click its ``item``."""
    bar = wait.until(
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text == menu),
            None,
        )
    )
    bar.click()
    entry = wait.until(
        lambda d: next(
            (
                e
                for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-item .lm-Menu-itemLabel")
                if e.text == item and e.is_displayed()
            ),
            None,
        )
    )
    entry.click()


def _explorer_img_src(driver) -> str | None:
    """The ``src`` of the image in the last code cell's widget Output, or None."""
    return driver.execute_script(
        """
        const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
        if (!cells.length) { return null; }
        const img = cells[cells.length - 1].querySelector('.widget-output img');
        return img ? img.getAttribute('src') : null;
        """
    )


def test_explorer_redraws_in_jupyterlab(lab, browser):
    url, token, tmp = lab
    driver = browser
    wait = WebDriverWait(driver, START_TIMEOUT)
    start = time.monotonic()
    driver.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    # The notebook is open and its kernel has started.
    wait.until(lambda d: (d.execute_script(KERNEL_STATE_JS) or {}).get("status") == "idle")

    # The committed outputs and execution counts are cleared first, so that "every code cell has
    # a count" below means that every cell has run here.
    _click_menu(driver, wait, "Edit", "Clear Outputs of All Cells")
    wait.until(lambda d: all(c is None for c in d.execute_script(KERNEL_STATE_JS)["counts"]))
    _click_menu(driver, wait, "Run", "Run All Cells")
    try:
        WebDriverWait(driver, RUN_TIMEOUT, poll_frequency=1).until(
            lambda d: (
                (s := d.execute_script(KERNEL_STATE_JS))
                and s["status"] == "idle"
                and all(c is not None for c in s["counts"])
            )
        )
    except TimeoutException:
        _shot(driver, "run_all_timeout.png")
        raise AssertionError(
            f"Run All did not finish within {RUN_TIMEOUT} s: "
            f"{driver.execute_script(KERNEL_STATE_JS)}\n{_tail(tmp / 'lab.log')}"
        ) from None
    ran = time.monotonic() - start
    _shot(driver, "run_all.png")
    stderr = "[data-mime-type='application/vnd.jupyter.stderr']"
    tracebacks = [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, stderr) if "Traceback" in e.text
    ]
    assert not tracebacks, f"a cell failed:\n{tracebacks[0][-3000:]}"

    cells = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
    figures = [
        img
        for cell in cells[:-1]
        for img in cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea img")
    ]
    assert figures, "no cell before the explorer shows the figure"
    _shot(driver, "figure.png", figures[0])
    natural, shown = driver.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].clientWidth];", figures[0]
    )
    print(f"figure: {natural} px wide, shown {shown} px wide in a {WINDOW[0]} px window")  # noqa: T201
    explorer = cells[-1].find_element(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-vbox")
    selects = explorer.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")
    assert selects, "the explorer shows no dropdown"
    before = WebDriverWait(driver, 60).until(lambda d: _explorer_img_src(d))
    _shot(driver, "explorer_before.png", explorer)

    dropdown = Select(selects[0])
    current = dropdown.first_selected_option.text
    other = next(o.text for o in dropdown.options if o.text != current)
    dropdown.select_by_visible_text(other)
    after = WebDriverWait(driver, 120, poll_frequency=0.5).until(
        lambda d: (src := _explorer_img_src(d)) and src != before and src,
        message=f"the explorer's image did not change after choosing {other!r}",
    )
    _shot(driver, "explorer_after.png", explorer)
    print(f"Run All took {ran:.0f} s; explorer: {current!r} -> {other!r}")  # noqa: T201
    assert after != before
