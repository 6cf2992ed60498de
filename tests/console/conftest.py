"""Browser fixtures: the tiny demo (database, registry, keys), the app under uvicorn, headless Chromium.

Without Chromium and chromium-driver the browser tests skip with the reason, except under CI (`CI=true`),
where they fail, as the PostgreSQL tests do. Screenshots go to `var/test-artifacts/console/`.

A failed attempt (a rerun's too: pytest-rerunfailures shows only the last attempt's traceback) is printed
to the terminal at once and recorded (message, URL, page source, screenshot) under the session's
`console-failures` tmp dir, so a flake's first cause is in the CI log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.serving.conftest import (  # noqa: F401  (the app over HTTP, without a browser: test_form_failures)
    client,
    keys,
    make_client,
    session_factory,
    settings,
    source,
    template_db,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
# Ten ports from CROSSCART_TEST_PORT_BASE (default 18120), so parallel checkouts do not collide.
_BASE_PORT = int(os.environ.get("CROSSCART_TEST_PORT_BASE", "18120"))
PORTS = range(_BASE_PORT, _BASE_PORT + 10)
#: The most one step may take: a page load, a script (axe-core), a wait for a page's state, an API call,
#: the server's start. A step took up to 36 s at load 24 on 2 cores and 30 s was the page-load and script
#: limit; every use is a bound on a poll or an await, never a pause, so an idle machine is not slowed.
STEP_SECONDS = 120


def _browser_reason() -> str | None:
    for name in ("chromium", "chromedriver"):
        if shutil.which(name) is None:
            return f"{name} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (dev dependency)"
    return None


@pytest.fixture(scope="session")
def browser_reason() -> str | None:
    return _browser_reason()


@pytest.fixture(scope="session")
def needs_browser(browser_reason):
    if browser_reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the browser tests cannot run: {browser_reason}")
        pytest.skip(browser_reason)


@pytest.fixture(scope="session")
def demo(needs_browser, tmp_path_factory, migrated_sqlite, empty_mlflow_db) -> dict:
    """`crosscart demo --scale tiny --no-serve` into a private data directory: database, the registry
    with two recommender versions and the uplift model, and one key per role. The empty databases are
    the session's templates (tests/test_demo.py covers the demo creating its own): that spares the
    demo about 4 s of CPU migrating both."""
    data = tmp_path_factory.mktemp("console-demo")
    shutil.copy(migrated_sqlite, data / "crosscart.db")
    shutil.copy(empty_mlflow_db, data / "mlflow.db")
    env = {
        **os.environ,
        "CROSSCART_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
    }
    env.pop("CROSSCART_DATABASE_URL", None)
    env.pop("CROSSCART_MLFLOW_URI", None)
    code = "from crosscart.cli import app; app()"
    subprocess.run(
        [sys.executable, "-c", code, "demo", "--scale", "tiny", "--no-serve"],
        env=env, check=True, cwd=data, capture_output=True, timeout=600,  # 207 s seen at load 24 on 2 cores
    )  # fmt: skip
    demo_keys = json.loads((data / "demo-keys.json").read_text())
    return {
        "dir": data,
        "keys": {label: k["key"] for label, k in demo_keys["keys"].items()},
        "samples": demo_keys["samples"],
    }


@pytest.fixture(scope="session")
def server(demo) -> str:
    """The app under uvicorn on a free port of `PORTS`; stopped after the session."""
    port = free_port(PORTS)
    data = demo["dir"]
    env = {
        **os.environ,
        "CROSSCART_DATA_DIR": str(data),
        "CROSSCART_TEST_MARKET_DIR": str(data / "marketplace-tiny"),
        # MLflow resolves `models:/` artifact URIs through its process-wide tracking URI
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}",
        "CROSSCART_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "10000",
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
    }
    log = open(data / "uvicorn.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.console.app:create", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STEP_SECONDS
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {(data / 'uvicorn.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def driver(needs_browser):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    browser.set_page_load_timeout(STEP_SECONDS)
    browser.set_script_timeout(STEP_SECONDS)  # axe-core's run (`Console.check`); 30 s by default
    # Before any of a page's own code: record what its Content-Security-Policy blocks (`Console.check`).
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})
    # axe-core on every page from its start, sent to the browser once: sending its 0.5 MB with each check
    # (about 50 a run) cost more CPU in chromedriver and pytest than the checks themselves; the renderer
    # compiles it once and reuses the code for the next pages. Outside the page's CSP, as before.
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": AXE})
    yield browser
    browser.quit()


AXE = (Path(__file__).parent / "vendor" / "axe-4.11.4.min.js").read_text()
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(
  `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture(scope="session")
def failures(tmp_path_factory) -> Path:
    """Where `pytest_runtest_makereport` records the browser's state at each failed attempt."""
    return tmp_path_factory.mktemp("console-failures")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    console = item.funcargs.get("console") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and console is not None:
        _record_failure(item, report, console)
    return report


def _record_failure(item, report, console) -> None:
    attempt = getattr(item, "execution_count", 1)
    stem = console.failures / f"{item.name}-attempt{attempt}"
    message = str(report.longrepr.reprcrash.message) if hasattr(report.longrepr, "reprcrash") else ""
    lines = [f"console attempt {attempt} of {item.nodeid} failed: {message.strip()}"]
    try:
        url = console.driver.current_url
        stem.with_suffix(".html").write_text(console.driver.page_source)
        console.driver.save_screenshot(str(stem.with_suffix(".png")))
        lines.append(f"  at {url}; page source and screenshot: {stem}.html, {stem}.png")
    except Exception as exc:  # the browser itself may be what failed: the message still gets out
        lines.append(f"  browser state not recorded: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    stem.with_suffix(".txt").write_text(str(report.longrepr))
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line, red=True)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
