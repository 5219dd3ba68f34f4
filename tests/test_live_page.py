"""The live page in a real browser: Debian's headless Chromium, its fake microphone playing the sample
speech, the gateway and a real tritonserver (tiny profile). The page starts a session, draws frames
and shows its stats, stops cleanly; a closed tab frees the session on the server."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from ditto_triton.benchmarks.metrics import scrape, value
from ditto_triton.gateway.app import create_app
from ditto_triton.model_repository.server import free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def triton(triton_server_factory):
    return triton_server_factory(include_services=True)


@pytest.fixture(scope="module")
def gateway(triton, samples_dir):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(triton.grpc_url, samples_dir / "ditto_example_image.jpg"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(samples_dir, tmp_path):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={samples_dir / 'ditto_example_audio.wav'}",
        "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900", f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def live_stats(driver) -> dict:
    return driver.execute_script("return Object.assign({}, window.dittoLive)")


def wait_for(driver, predicate, timeout_s: float, what: str) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = live_stats(driver)
        if predicate(stats):
            return stats
        assert stats.get("error") is None, f"the page reports: {stats['error']}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}; page state {json.dumps(stats)}"
        time.sleep(0.2)


def active_sessions(triton) -> float:
    return value(scrape(triton.metrics_url), "ditto_active_sessions", model="orchestrator")


def test_live_page_streams_shows_stats_and_stops(browser, gateway, triton, tmp_path):
    browser.get(gateway)
    wait_for(browser, lambda s: s["state"] == "idle", 10, "the page to load")
    assert browser.find_element("id", "stat-server").text == triton.grpc_url
    browser.find_element("id", "start").click()
    stats = wait_for(browser, lambda s: s["frames"] >= 75 and s["drawn"] >= 25, 90, "75 frames received, 25 drawn")
    assert stats["state"] == "running" and stats["firstFrameMs"] > 0 and stats["fps"] > 5
    panel = {k: browser.find_element("id", f"stat-{k}").text for k in ("first-frame", "fps", "frames", "late")}
    assert panel["first-frame"].endswith(" ms") and float(panel["fps"]) > 0 and int(panel["frames"]) >= 75, panel

    png = browser.get_screenshot_as_png()
    (tmp_path / "live.png").write_bytes(png)
    canvas = browser.find_element("id", "video")
    scale = browser.execute_script("return window.devicePixelRatio")
    box = [round(v * scale) for v in (canvas.location["x"], canvas.location["y"], canvas.location["x"] + canvas.size["width"], canvas.location["y"] + canvas.size["height"])]
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").crop(box), np.float32)
    assert shown.std() > 20 and shown.mean() > 20, "the video shows a blank frame"  # a face, not a black canvas

    browser.find_element("id", "stop").click()
    done = wait_for(browser, lambda s: s["state"] in ("stopped", "failed"), 60, "the session to finish")
    assert done["state"] == "stopped" and done["error"] is None
    assert "done:" in browser.find_element("id", "status").text
    deadline = time.monotonic() + 15
    while active_sessions(triton) != 0:
        assert time.monotonic() < deadline, "the stopped session is still open on the server"
        time.sleep(0.2)


def test_closing_the_tab_frees_the_server_session(browser, gateway, triton):
    browser.get(gateway)
    wait_for(browser, lambda s: s["state"] == "idle", 10, "the page to load")
    browser.find_element("id", "start").click()
    wait_for(browser, lambda s: s["frames"] >= 10, 90, "frames")
    assert active_sessions(triton) == 1
    page = browser.current_window_handle
    browser.switch_to.new_window("tab")
    other = browser.current_window_handle
    browser.switch_to.window(page)
    browser.close()  # the tab with the live session goes away mid-stream
    browser.switch_to.window(other)
    deadline = time.monotonic() + 15
    while active_sessions(triton) != 0:
        assert time.monotonic() < deadline, "the session of the closed tab is still open on the server"
        time.sleep(0.2)
