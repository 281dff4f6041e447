"""The web page in headless Chromium against a real `evoprune serve`: token, form, front, analysis, export."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.servers import RayHead, free_port

pytestmark = [pytest.mark.browser, pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = Path(os.environ.get("EVOPRUNE_CHROMIUM", "/usr/bin/chromium"))
# No sandbox: containers run tests as root; no network services, so a run never reaches outside.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 120
# Ray, TensorFlow and the runner start on two shared cores before the first evaluation arrives
FIRST_POINTS_S = 300
FINISH_S = 300
# the analysis actor starts, imports TensorFlow, re-trains the front and draws its plots
ANALYSIS_S = 300
UI_S = 30
# set to a path (e.g. docs/web.png) to keep the screenshot of the live page
SCREENSHOT_ENV = "EVOPRUNE_WEB_SCREENSHOT"

# A few seconds of real work: 8x8 digits as raw pixels, a 16-unit head, 3 epochs, 2 runs of 8 evaluations.
TINY_CONFIG = """\
name: browser-test
dataset:
  source: sklearn:digits
ood:
  - source: sklearn:sample_images
backbone:
  name: pixels
  weights: null
head:
  mode: features
  layers: [16]
  masked: [0]
training:
  max_epochs: 3
search:
  population_size: 4
  max_evaluations: 8
  runs: 2
  seed: 0
cache_dir: {cache_dir}
"""

BAD_CONFIG = """\
name: broken
search:
  population_size: 4
  max_evaluations: 8
  runs: 0
dataset:
  source: digits
colour: blue
"""


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"evoprune serve exited with {process.returncode}:\n{_log_tail(log)}", pytrace=False)
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if json.load(response).get("status") == "ok":
                return
        time.sleep(0.5)
    pytest.fail(f"evoprune serve did not answer /health within {SERVER_START_S} s:\n{_log_tail(log)}")


def _wait_in_page(page: Any, server: Server, condition: str, timeout_s: float, what: str) -> None:
    """Wait for a JavaScript condition, failing at once (with the server's log) if the server dies."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        remaining_s = deadline - time.monotonic()
        try:
            page.wait_for_function(condition, timeout=max(1.0, min(5.0, remaining_s)) * 1000)
            return
        except PlaywrightTimeout:
            if server.process.poll() is not None:
                pytest.fail(f"the server exited while waiting for {what}:\n{_log_tail(server.log)}")
            if remaining_s <= 5.0:
                page.screenshot(path=str(server.root / "timeout.png"), full_page=True)
                pytest.fail(
                    f"no {what} within {timeout_s} s (screenshot: {server.root / 'timeout.png'}):\n"
                    f"{_log_tail(server.log)}"
                )


def _stop(process: subprocess.Popen[bytes]) -> None:
    # the server's own session: uvicorn and anything it started go together
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    # A private Ray head the server joins (RAY_ADDRESS), as on a cluster. Its own temp dir keeps it apart
    # from other Ray instances on the machine.
    head = RayHead(cpus=2)
    head.start()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ray_head: RayHead) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = secrets.token_hex(16)
    # the local store (files under the data dir): nothing shared with other test runs on the machine
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "EVOPRUNE_REDIS_URL"}}
    env.update(
        RAY_ADDRESS=ray_head.address,
        EVOPRUNE_DATA_DIR=str(root / "data"),
        EVOPRUNE_API_TOKEN=token,
        EVOPRUNE_WORKERS_PER_EXPERIMENT="1",
        EVOPRUNE_RECOVER_ON_START="false",
        # the page's config names this cache folder: a posted path must lie under the server's roots
        EVOPRUNE_CACHE_DIR=str(root / "features"),
        PYTHONUNBUFFERED="1",
    )
    log = root / "server.log"
    command = [sys.executable, "-m", "evoprune.api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_health(url, process, log)
        yield Server(url=url, token=token, root=root, log=log, process=process)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}. Install it with `apt-get install -y chromium` "
            "(Debian/Ubuntu; scripts/test.sh does this when run as root), or point EVOPRUNE_CHROMIUM at a "
            "Chromium binary.",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        # the system Chromium, not `playwright install`: nothing is downloaded
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class PageUnderTest:
    page: Any
    errors: list[str]


@pytest.fixture(scope="module")
def signed_in(browser: Any, server: Server) -> Iterator[PageUnderTest]:
    """The page with the API token entered through its dialog (kept in sessionStorage for reloads)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(UI_S * 1000)
    page.goto(f"{server.url}/")
    # /health says a token is needed, so the page asks before listing experiments
    page.wait_for_selector("#token-dialog[open]")
    page.fill("#token-input", "not-the-token")
    page.click("#token-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('token-reason').textContent.includes('rejected')")
    page.fill("#token-input", server.token)
    page.click("#token-form button[type=submit]")
    page.wait_for_function("() => !document.getElementById('token-dialog').open")
    page.wait_for_selector("#list-empty:not([hidden])")
    try:
        yield PageUnderTest(page, errors)
    finally:
        page.close()


def test_a_bad_config_shows_the_servers_messages_next_to_the_form(signed_in: PageUnderTest) -> None:
    page = signed_in.page
    page.fill("#config-yaml", BAD_CONFIG)
    page.click("#submit-button")
    errors = page.wait_for_selector("#config-errors:not([hidden])")
    text = errors.inner_text()
    assert "problems" in text
    assert "search.runs" in text
    assert "dataset.source" in text
    assert "colour" in text and "unknown key" in text
    assert page.get_attribute("#config-yaml", "aria-invalid") == "true"
    # a field name is a button that selects that field's line in the config
    page.click("#config-errors button:has-text('dataset.source')")
    selected = page.evaluate(
        "() => { const t = document.getElementById('config-yaml'); "
        "return t.value.slice(t.selectionStart, t.selectionEnd); }"
    )
    assert selected == "  source: digits"
    # nothing was created
    assert page.locator("#experiment-list li").count() == 0
    assert signed_in.errors == []


def test_a_submitted_experiment_grows_its_front_live(signed_in: PageUnderTest, server: Server) -> None:
    page = signed_in.page
    page.click("#reset-config")
    page.fill("#config-yaml", TINY_CONFIG.format(cache_dir=server.root / "features"))
    page.click("#submit-button")
    # the server answers once the runner is launched on Ray, which the first time includes Ray's start
    _wait_in_page(
        page,
        server,
        "() => document.querySelector('#experiment-list li button[aria-current=true]') !== null",
        FIRST_POINTS_S,
        "new experiment in the list",
    )
    assert page.is_hidden("#config-errors")
    _wait_in_page(
        page,
        server,
        "() => (document.getElementById('front-plot').data || [])"
        ".some((trace) => trace.name.startsWith('run ') && trace.x.length > 0)",
        FIRST_POINTS_S,
        "points on the 3-D front",
    )
    _wait_in_page(
        page,
        server,
        "() => (document.getElementById('hv-plot').data || []).some((trace) => trace.y.length > 0)",
        UI_S,
        "hypervolume curve",
    )
    screenshot = server.root / "web.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])

    _wait_in_page(
        page,
        server,
        "() => document.getElementById('detail-status').textContent === 'succeeded'",
        FINISH_S,
        "succeeded status",
    )
    aggregated = page.evaluate(
        "() => document.getElementById('front-plot').data"
        ".find((trace) => trace.name.startsWith('all runs')).x.length"
    )
    assert aggregated >= 1
    assert page.locator("#front-table tbody tr").count() == aggregated
    assert page.inner_text("#detail-progress-label").startswith("16 / 16 evaluations")
    assert page.locator("#runs-table tbody tr").count() == 2
    assert page.is_hidden("#cancel-button")
    # the list is polled (every 4 s), not pushed: it may still say running for a moment
    _wait_in_page(
        page,
        server,
        "() => document.querySelector('#experiment-list li button[aria-current=true] .badge')"
        ".textContent === 'succeeded'",
        UI_S,
        "the list's succeeded badge",
    )

    # opened again after it ended: every run's hypervolume curve is drawn whole, not as its last point
    page.reload()
    page.click("#experiment-list li button")
    _wait_in_page(
        page,
        server,
        "() => (document.getElementById('hv-plot').data || []).filter((trace) => trace.x.length > 1)"
        ".map((trace) => trace.name).filter((name) => name.startsWith('run ')).length === 2",
        UI_S,
        "both runs' hypervolume curves after a reload",
    )
    assert signed_in.errors == []


def test_the_succeeded_experiment_is_analysed_and_its_plots_shown(
    signed_in: PageUnderTest, server: Server
) -> None:
    page = signed_in.page
    page.wait_for_selector("#analysis-card:not([hidden])")
    _wait_in_page(
        page,
        server,
        "() => document.getElementById('analysis-state').textContent === 'not analysed yet'",
        UI_S,
        "the analysis state",
    )
    # before any analysis the experiment's own files are there to download
    assert page.locator("#analysis-downloads a", has_text="summary.json").count() == 1
    assert page.locator("#analysis-gallery img").count() == 0
    page.fill("#analysis-top", "3")
    page.fill("#analysis-samples", "2")
    page.click("#analyse-button")
    _wait_in_page(
        page,
        server,
        "() => document.getElementById('analysis-state').textContent.startsWith('running')",
        UI_S,
        "the analysis to run",
    )
    assert page.is_disabled("#analyse-button")
    # the images come as blob URLs, fetched with the token
    _wait_in_page(
        page,
        server,
        "() => [...document.querySelectorAll('#analysis-gallery img')]"
        ".some((image) => image.complete && image.naturalWidth > 0)",
        ANALYSIS_S,
        "a plot in the analysis gallery",
    )
    _wait_in_page(
        page,
        server,
        "() => document.getElementById('analysis-state').textContent.startsWith('done')",
        UI_S,
        "the analysis to be done",
    )
    captions = " ".join(page.locator("#analysis-gallery figcaption").all_inner_texts())
    assert "importance.png" in captions and "ensembles.png" in captions
    assert (page.get_attribute("#analysis-gallery img >> nth=0", "src") or "").startswith("blob:")
    assert page.inner_text("#analyse-button") == "Analyse again" and page.is_enabled("#analyse-button")
    with page.expect_download() as download:
        page.click("#analysis-downloads a:has-text('analysis.json')")
    index = json.loads(Path(download.value.path()).read_text())
    assert index["format"] == "evoprune-analysis" and len(index["top"]) <= 3
    page.screenshot(path=str(server.root / "analysis.png"), full_page=True)
    assert signed_in.errors == []


def test_a_clicked_front_point_shows_its_objectives_and_exports_its_model(
    signed_in: PageUnderTest, server: Server
) -> None:
    page = signed_in.page
    # Plotly's own click event on the aggregated front's first point (WebGL picking under a headless
    # Chromium without a GPU is not what is tested here; the page's handling of the click is)
    clicked = page.evaluate(
        """() => {
        const plot = document.getElementById('front-plot');
        const trace = plot.data[plot.data.length - 1];
        const point = { x: trace.x[0], y: trace.y[0], z: trace.z[0], customdata: trace.customdata[0] };
        plot.emit('plotly_click', { points: [point] });
        return { accuracy: trace.x[0], mask: trace.customdata[0][1] };
    }"""
    )
    page.wait_for_selector("#point-card:not([hidden])")
    shown = page.inner_text("#point-objectives")
    assert f"{clicked['accuracy']:.4f}" in shown and "all runs" in shown
    assert page.is_enabled("#export-button")
    # the format chooser: an int8 TFLite file (the server writes the .keras file too, and checks both)
    page.select_option("#export-format", "tflite:int8")
    assert page.inner_text("#export-button") == "Export model (.tflite, int8)"
    with page.expect_download(timeout=ANALYSIS_S * 1000) as download:
        page.click("#export-button")
    name = download.value.suggested_filename
    assert name.startswith("mask-") and name.endswith("-int8.tflite"), name
    # a TFLite file is a FlatBuffer whose identifier, after the root offset, is TFL3
    assert Path(download.value.path()).read_bytes()[4:8] == b"TFL3"
    assert page.inner_text("#point-state").startswith("downloaded")
    assert page.is_enabled("#export-button")
    # an ensemble of every member of the aggregated front (percentiles 0 to 100), as one .keras model
    page.select_option("#export-format", "keras")
    page.fill("#export-ensemble", "0-100")
    assert page.inner_text("#export-button") == "Export ensemble (.keras)"
    with page.expect_download(timeout=ANALYSIS_S * 1000) as download:
        page.click("#export-button")
    assert download.value.suggested_filename == "ensemble-mean-0-100.keras"
    assert Path(download.value.path()).read_bytes()[:2] == b"PK"  # a .keras file is a zip archive
    (written,) = (server.root / "data" / "results").glob("*/exports/ensemble-mean-0-100/export.json")
    report = json.loads(written.read_text())
    assert report["formats"]["keras"]["reproduced"] and len(report["members"]) >= 1
    assert signed_in.errors == []


def test_the_event_stream_parser_follows_the_sse_rules(signed_in: PageUnderTest) -> None:
    # chunk boundaries fall inside a CRLF, a field name and a multi-line data field
    events = signed_in.page.evaluate(
        """() => {
        const seen = [];
        const parser = new EvoSSE.EventStreamParser((event) => seen.push(event));
        const chunks = [": keep-alive\\r", "\\n\\nid: 7\\r\\nev", "ent: front\\ndata: {\\"a\\":\\n",
                        "data: 1}\\n\\n", "retry: 5000\\ndata:x\\n\\nid\\n", "data: y\\n\\n"];
        chunks.forEach((chunk) => parser.push(chunk));
        return { seen, retry: parser.retryMs, lastId: parser.lastEventId };
    }"""
    )
    assert events["seen"] == [
        {"type": "front", "data": '{"a":\n1}', "id": "7"},
        {"type": "message", "data": "x", "id": "7"},
        {"type": "message", "data": "y", "id": ""},
    ]
    assert events["retry"] == 5000
    assert events["lastId"] == ""
    assert signed_in.errors == []


def test_a_dropped_stream_resumes_with_last_event_id(signed_in: PageUnderTest, server: Server) -> None:
    # the page is the unit here: its event stream is scripted to end early once, then to finish
    page = signed_in.page
    experiment = "0123456789abcdef"
    seen: list[str | None] = []
    first = 'retry: 100\n\nid: 41\nevent: status\ndata: {"status": "running", "started_at": null}\n\n'
    final = (
        'id: 42\nevent: done\ndata: {"status": "cancelled", "hypervolume": 0.25, "evaluations": 3, '
        '"cache_hits": 0, "seconds": 1.0, "results_dir": "", "error": null}\n\n'
    )

    def answer(route: Any, request: Any) -> None:
        seen.append(request.headers.get("last-event-id"))
        assert request.headers.get("authorization") == f"Bearer {server.token}"
        body = first if len(seen) == 1 else final
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    pattern = f"**/experiments/{experiment}/events"
    page.route(pattern, answer)
    try:
        page.goto(f"{server.url}/#experiment={experiment}")
        page.wait_for_function("() => document.getElementById('detail-status').textContent === 'cancelled'")
    finally:
        page.unroute(pattern)
    assert seen == [None, "41"]
    assert page.inner_text("#stat-hv") == "0.2500"
    assert signed_in.errors == []


def test_static_files_need_no_token_but_the_api_does(server: Server) -> None:
    with urllib.request.urlopen(f"{server.url}/static/plotly.min.js", timeout=10) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/experiments", timeout=10)
    assert refused.value.code == 401


def test_front_points_that_break_the_constraints_are_crossed_out_and_named_in_the_legend(
    signed_in: PageUnderTest,
) -> None:
    drawn = signed_in.page.evaluate(
        """async () => {
        const point = (mask, accuracy, active_fraction, auroc, run) =>
            ({ mask, accuracy, active_fraction, auroc, run });
        const fronts = new Map([
            [0, [point("aa", 0.95, 0.8, 0.7, 0), point("bb", 0.90, 0.4, 0.7, 0),
                 point("cc", 0.70, 0.2, 0.9, 0)]],
            [-1, [point("aa", 0.95, 0.8, 0.7, -1), point("cc", 0.70, 0.2, 0.9, -1)]],
        ]);
        const element = document.createElement("div");
        document.body.appendChild(element);
        const config = { search: { constraints: { max_active_fraction: 0.5, min_accuracy: 0.8 } } };
        const constraints = EvoPlots.constraintBounds(config);
        await EvoPlots.drawFront(element, { id: "x", fronts, evaluations: [], constraints });
        const traces = element.data.map(
            (trace) => ({ name: trace.name, masks: trace.customdata.map((c) => c[1]) }));
        const budget = EvoPlots.constraintBounds({ search: { constraints: { max_head_flops: 100 } } });
        const none = EvoPlots.constraintBounds({ search: { constraints: {} } });
        EvoPlots.purge(element);
        element.remove();
        const edge = EvoPlots.breaksBounds(point("dd", 0.8, 0.5, 0, 0), constraints);
        return { traces, budget, none: none.active, edge };
    }"""
    )
    # "aa" is too large, "cc" not accurate enough: each crossed out once, though on two fronts
    assert drawn["traces"][-1] == {"name": "infeasible: breaks search.constraints", "masks": ["aa", "cc"]}
    assert [trace["name"] for trace in drawn["traces"][:-1]] == ["run 0", "all runs (aggregated front)"]
    # a value equal to its bound keeps to it; a head budget is set but only the server can check it
    assert drawn["edge"] is False and drawn["none"] is False
    assert drawn["budget"]["active"] and drawn["budget"]["headBudget"]
    assert signed_in.errors == []
