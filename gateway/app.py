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
from ditto_triton.gateway.protocol import ProtocolError, pack_frame, pcm_from_message

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 25_000_000
FRAME_OPTIONS = {"output_format": "jpeg", "jpeg_quality": 85}


def create_app(triton_url: str, sample_image: Path | None = None, timeout_s: float = 60.0) -> FastAPI:
    app = FastAPI(title="Ditto live", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    client_lock = threading.Lock()
    clients: list[DittoClient] = []

    def client() -> DittoClient:
        with client_lock:
            if not clients:
                clients.append(DittoClient(triton_url, timeout_s=timeout_s))
            return clients[0]

    def register(data: bytes, kind: str) -> str:
        c = client()
        return c.register_video(data, {"max_size": 512}) if kind == "video" else c.register_avatar(data, {"max_size": 512})

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    def config() -> dict:
        return {"triton_url": triton_url, "sample": sample_image is not None}

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
        try:
            return {"avatar_id": await run_in_threadpool(register, data, kind)}
        except DittoClientError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/api/avatar/sample")
    async def register_sample() -> dict:
        if sample_image is None:
            raise HTTPException(404, "this gateway has no sample portrait; upload one")
        try:
            return {"avatar_id": await run_in_threadpool(register, sample_image.read_bytes(), "image")}
        except DittoClientError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.websocket("/ws/session")
    async def session_socket(ws: WebSocket, avatar: str, options: str = "{}") -> None:
        await ws.accept()
        try:
            extra = json.loads(options)
            if not isinstance(extra, dict):
                raise ValueError("options must be a JSON object")
            session = await run_in_threadpool(client().open_session, avatar, {**extra, **FRAME_OPTIONS}, False)
        except (ValueError, DittoClientError) as exc:
            await ws.send_json({"type": "error", "message": str(exc)})
            await ws.close()
            return
        await ws.send_json({"type": "ready"})
        await _bridge(ws, session)

    return app


async def _bridge(ws: WebSocket, session: StreamSession) -> None:
    """Page audio -> session; session frames -> page; ends or cancels the session with the socket."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def pump() -> None:  # session.frames() blocks: it runs on its own thread
        count = 0
        try:
            for frame in session.frames():
                loop.call_soon_threadsafe(events.put_nowait, ("frame", frame))
                count += 1
            loop.call_soon_threadsafe(events.put_nowait, ("done", count))
        except Exception as exc:  # noqa: BLE001 - reported to the page
            loop.call_soon_threadsafe(events.put_nowait, ("error", str(exc)))

    async def forward() -> None:
        while True:
            kind, value = await events.get()
            if kind == "frame":
                await ws.send_bytes(pack_frame(value.index, value.pts_s, value.encoded))
            else:
                await ws.send_json({"type": "done", "frames": value} if kind == "done" else {"type": "error", "message": value})
                return

    threading.Thread(target=pump, daemon=True, name="ditto-live-frames").start()
    sender = asyncio.create_task(forward())
    try:
        while not sender.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                if message.get("bytes") is not None:
                    session.send(pcm_from_message(message["bytes"]))
                elif json.loads(message.get("text") or "{}").get("type") == "end":
                    session.end()
            except (ProtocolError, ValueError, DittoClientError) as exc:
                await ws.send_json({"type": "error", "message": str(exc)})
                break
    finally:
        completed = sender.done() and not sender.cancelled() and sender.exception() is None
        sender.cancel()
        if completed:
            session.close()
        else:  # the page went away (or broke the protocol) mid-session
            log.info("live session %d: the page left; cancelling it", session.sequence_id)
            await run_in_threadpool(session.cancel)
