"""The live demo's gateway: serves the page, registers portraits, and bridges one WebSocket per browser
tab to one Triton streaming session (`protocol.py` has the wire format).

Browsers cannot speak Triton's gRPC; the gateway is a thin tritonclient user. Audio from the page is
passed on as it arrives, frames go back as the server's JPEG bytes (never decoded here). When the
socket closes before the session has finished, the session is cancelled so the server frees it at
its next frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ditto_triton.client.errors import DittoClientError
from ditto_triton.client.session import DittoClient, StreamSession
from ditto_triton.gateway.protocol import (
    ProtocolError,
    done_event,
    error_event,
    pack_frame,
    pcm_from_message,
    ready_event,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 25_000_000
# The page draws JPEGs natively; at 512x512 q85 is 1/14 of raw RGB's bytes for 1 ms of server CPU a frame,
# PNG 1/1.6 for 17 ms (docs/benchmarks.md#frame-formats).
FRAME_OPTIONS = {"output_format": "jpeg", "jpeg_quality": 85}
AVATAR_CROP = {"max_size": 512}


class _Triton:
    """The gateway's one DittoClient, made on first use (tritonserver may come up after the gateway)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url, self._timeout_s = url, timeout_s
        self._lock = threading.Lock()
        self._client: DittoClient | None = None

    def client(self) -> DittoClient:
        with self._lock:
            if self._client is None:
                self._client = DittoClient(self._url, timeout_s=self._timeout_s)
            return self._client

    def register(self, data: bytes, kind: str) -> str:
        """The avatar id of a portrait (`kind` "image") or a video."""
        c = self.client()
        return (
            c.register_video(data, dict(AVATAR_CROP)) if kind == "video" else c.register_avatar(data, dict(AVATAR_CROP))
        )


def create_app(triton_url: str, sample_image: Path | None = None, timeout_s: float = 60.0) -> FastAPI:
    app = FastAPI(title="Ditto live", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    triton = _Triton(triton_url, timeout_s)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    def config() -> dict:
        return {"triton_url": triton_url, "sample": sample_image is not None}

    _add_avatar_routes(app, triton, sample_image)
    _add_session_route(app, triton)
    return app


def _add_avatar_routes(app: FastAPI, triton: _Triton, sample_image: Path | None) -> None:
    @app.post("/api/avatar")
    async def register_upload(request: Request) -> dict:
        data = await request.body()
        if not data:
            raise HTTPException(400, "send the portrait (or video) bytes as the request body")
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload of {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES}")
        kind = request.query_params.get("kind", "image")
        if kind not in ("image", "video"):
            raise HTTPException(400, f"kind must be image or video, got {kind!r}")
        return {"avatar_id": await _register(triton, data, kind)}

    @app.post("/api/avatar/sample")
    async def register_sample() -> dict:
        if sample_image is None:
            raise HTTPException(404, "this gateway has no sample portrait; upload one")
        return {"avatar_id": await _register(triton, sample_image.read_bytes(), "image")}


async def _register(triton: _Triton, data: bytes, kind: str) -> str:
    try:
        return await run_in_threadpool(triton.register, data, kind)
    except DittoClientError as exc:
        raise HTTPException(400, str(exc)) from None


def _add_session_route(app: FastAPI, triton: _Triton) -> None:
    @app.websocket("/ws/session")
    async def session_socket(ws: WebSocket, avatar: str, options: str = "{}") -> None:
        await ws.accept()
        try:
            extra = json.loads(options)
            if not isinstance(extra, dict):
                raise ValueError("options must be a JSON object")
            session = await run_in_threadpool(triton.client().open_session, avatar, {**extra, **FRAME_OPTIONS}, False)
        except (ValueError, DittoClientError) as exc:
            await ws.send_json(error_event(str(exc)))
            await ws.close()
            return
        await ws.send_json(ready_event())
        await _bridge(ws, session)


async def _bridge(ws: WebSocket, session: StreamSession) -> None:
    """Page audio -> session; session frames -> page; ends or cancels the session with the socket."""
    events: asyncio.Queue = asyncio.Queue()
    pump = threading.Thread(
        target=_pump_frames, args=(session, asyncio.get_running_loop(), events), daemon=True, name="ditto-live-frames"
    )
    pump.start()
    sender = asyncio.create_task(_forward(ws, events))
    try:
        await _receive_audio(ws, session, sender)
    finally:
        completed = sender.done() and not sender.cancelled() and sender.exception() is None
        sender.cancel()
        if completed:
            session.close()
        else:  # the page went away (or broke the protocol) mid-session
            log.info("live session %d: the page left; cancelling it", session.sequence_id)
            await run_in_threadpool(session.cancel)


def _pump_frames(session: StreamSession, loop: asyncio.AbstractEventLoop, events: asyncio.Queue) -> None:
    """The session's frames, then ("done", count) or ("error", message), onto `events`; runs on its own
    thread because session.frames() blocks."""
    count = 0
    try:
        for frame in session.frames():
            loop.call_soon_threadsafe(events.put_nowait, ("frame", frame))
            count += 1
        loop.call_soon_threadsafe(events.put_nowait, ("done", count))
    except Exception as exc:  # noqa: BLE001 - reported to the page
        loop.call_soon_threadsafe(events.put_nowait, ("error", str(exc)))


async def _forward(ws: WebSocket, events: asyncio.Queue) -> None:
    """Frames to the page as they come, then the done or error event."""
    while True:
        kind, value = await events.get()
        if kind == "frame":
            await ws.send_bytes(pack_frame(value.index, value.pts_s, value.encoded))
        else:
            await ws.send_json(done_event(value) if kind == "done" else error_event(value))
            return


async def _receive_audio(ws: WebSocket, session: StreamSession, sender: asyncio.Task) -> None:
    """The page's audio into the session until the frames are all sent, the page leaves or breaks the protocol."""
    while not sender.done():
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes") is not None:
                session.send(pcm_from_message(message["bytes"]))
            elif json.loads(message.get("text") or "{}").get("type") == "end":
                session.end()
        except (ProtocolError, ValueError, DittoClientError) as exc:
            await ws.send_json(error_event(str(exc)))
            return
