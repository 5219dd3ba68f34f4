"""The live page in a real browser: Debian's headless Chromium, its fake microphone playing the sample
speech, the gateway and a real tritonserver (tiny profile). The page starts a session, draws frames
and shows its stats, stops cleanly; a closed tab frees the session on the server."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image
from support import active_sessions, wait_for

from ditto_triton.gateway.app import create_app
from ditto_triton.model_repository.server import free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def triton(server):
    return server


@pytest.fixture(scope="module")
def gateway(triton, samples_dir):
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(triton.grpc_url, samples_dir / "ditto_example_image.jpg"),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the gateway to start", 20)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(samples_dir, tmp_path):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={samples_dir / 'ditto_example_audio.wav'}",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def live_stats(driver) -> dict:
    return driver.execute_script("return Object.assign({}, window.dittoLive)")


def wait_for_page(driver, predicate, timeout_s: float, what: str) -> dict:
    def page_state():
        stats = live_stats(driver)
        assert stats.get("error") is None, f"the page reports: {stats['error']}"
        return stats if predicate(stats) else None

    return wait_for(page_state, what, timeout_s, interval_s=0.2)


def test_live_page_streams_shows_stats_and_stops(browser, gateway, triton, tmp_path):
    browser.get(gateway)
    wait_for_page(browser, lambda s: s["state"] == "idle", 10, "the page to load")
    assert browser.find_element("id", "stat-server").text == triton.grpc_url
    browser.find_element("id", "start").click()
    stats = wait_for_page(browser, lambda s: s["frames"] >= 75 and s["drawn"] >= 25, 90, "75 frames received, 25 drawn")
    assert stats["state"] == "running" and stats["firstFrameMs"] > 0 and stats["fps"] > 5
    print(
        f"live page: first frame {stats['firstFrameMs']:.0f} ms, {stats['fps']:.1f} frames/s, {stats['late']} late, video {stats['avLagMs']:.0f} ms behind the audio"
    )
    assert stats["avLagMs"] >= 0, (
        stats
    )  # frames wait for their time on the audio clock (how far behind: a benchmark's job)
    panel = {
        k: browser.find_element("id", f"stat-{k}").text for k in ("first-frame", "fps", "frames", "late", "av-lag")
    }
    assert panel["first-frame"].endswith(" ms") and float(panel["fps"]) > 0 and int(panel["frames"]) >= 75, panel

    (tmp_path / "live.png").write_bytes(browser.get_screenshot_as_png())  # the whole page, for a person to look at
    canvas = browser.find_element("id", "video")
    shown = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"), np.float32)
    assert min(shown.shape[:2]) >= 256, shown.shape
    assert shown.std() > 20 and shown.mean() > 20, "the video shows a blank frame"  # a face, not a black canvas

    browser.find_element("id", "stop").click()
    done = wait_for_page(browser, lambda s: s["state"] in ("stopped", "failed"), 60, "the session to finish")
    assert done["state"] == "stopped" and done["error"] is None
    assert "done:" in browser.find_element("id", "status").text
    wait_for(lambda: active_sessions(triton) == 0, "the stopped session is still open on the server")


def test_closing_the_tab_frees_the_server_session(browser, gateway, triton):
    browser.get(gateway)
    wait_for_page(browser, lambda s: s["state"] == "idle", 10, "the page to load")
    browser.find_element("id", "start").click()
    wait_for_page(browser, lambda s: s["frames"] >= 10, 90, "frames")
    assert active_sessions(triton) == 1
    page = browser.current_window_handle
    browser.switch_to.new_window("tab")
    other = browser.current_window_handle
    browser.switch_to.window(page)
    browser.close()  # the tab with the live session goes away mid-stream
    browser.switch_to.window(other)
    wait_for(lambda: active_sessions(triton) == 0, "the session of the closed tab is still open on the server")


# -- the gateway's protocol and errors, without a browser ---------------------------------------
def post(url: str, body: bytes | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body if body is not None else b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_gateway_registers_and_refuses_with_a_reason(gateway, portrait):
    status, body = post(gateway + "api/avatar/sample")
    assert status == 200 and len(body["avatar_id"]) == 32
    assert post(gateway + "api/avatar", portrait) == (200, body)  # the sample is this portrait: same id
    assert post(gateway + "api/avatar", b"")[0] == 400
    status, body = post(gateway + "api/avatar", b"not an image")
    assert status == 400 and "not an image in a supported format" in body["detail"]
    status, body = post(gateway + "api/avatar?kind=video", portrait)
    assert status == 400 and "not a supported video" in body["detail"]
    assert post(gateway + "api/avatar?kind=gif", portrait)[0] == 400


def test_gateway_socket_streams_frames_and_reports_errors(gateway, triton, speech16k):
    from websockets.sync.client import connect

    from ditto_triton.gateway.protocol import unpack_frame

    avatar = post(gateway + "api/avatar/sample")[1]["avatar_id"]
    ws_url = gateway.replace("http://", "ws://") + "ws/session"
    pcm = (np.clip(speech16k[:32000], -1, 1) * 32767).astype("<i2")
    with connect(f"{ws_url}?avatar={'0' * 32}") as ws:  # the session opens (START) with the first audio
        assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
        ws.send(pcm[:3200].tobytes())
        event = json.loads(ws.recv(timeout=30))
        assert event["type"] == "error" and "register" in event["message"], event
    with connect(f"{ws_url}?avatar={avatar}") as ws:
        assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
        for i in range(0, pcm.size, 3200):
            ws.send(pcm[i : i + 3200].tobytes())
        ws.send(json.dumps({"type": "end"}))
        frames = []
        while True:
            message = ws.recv(timeout=60)
            if isinstance(message, str):
                assert json.loads(message) == {"type": "done", "frames": 50}
                break
            frames.append(unpack_frame(message))
    assert [f[0] for f in frames] == list(range(50)) and frames[10][1] == pytest.approx(0.4)
    assert Image.open(io.BytesIO(frames[0][2])).size == (512, 512)  # the server's JPEG, passed through
    with connect(f"{ws_url}?avatar={avatar}") as ws:
        assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
        ws.send(b"\x01\x02\x03")  # not whole int16 samples
        event = json.loads(ws.recv(timeout=30))
        assert event["type"] == "error" and "whole number of samples" in event["message"]
    wait_for(lambda: active_sessions(triton) == 0, "a refused session is still open on the server")


def test_an_audio_file_and_an_uploaded_portrait_play_to_the_end(
    browser, gateway, triton, samples_dir, portrait_video, tmp_path
):
    clip = tmp_path / "face.mp4"
    clip.write_bytes(portrait_video)
    browser.get(gateway)
    wait_for_page(browser, lambda s: s["state"] == "idle", 10, "the page to load")
    browser.find_element("css selector", "input[name=portrait][value=upload]").click()
    browser.find_element("id", "portrait-file").send_keys(str(clip))  # a video avatar
    browser.find_element("css selector", "input[name=audio][value=file]").click()
    browser.find_element("id", "audio-file").send_keys(str(samples_dir / "ditto_example_audio.wav"))
    browser.find_element("id", "start").click()
    # the file plays in real time and ends the session by itself: every frame of its 15.76 s arrives
    done = wait_for_page(browser, lambda s: s["state"] in ("stopped", "failed"), 90, "the file to play to the end")
    assert done["state"] == "stopped", done
    assert done["frames"] == -(-done["samplesSent"] // 640) and done["drawn"] > 100, done
    assert done["frames"] == 394, done
    assert browser.find_element("id", "status").text == "done: 394 frames"
