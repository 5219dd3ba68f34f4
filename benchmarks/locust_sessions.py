"""Concurrent streaming sessions driven by Locust: each simulated user is one live client.

A user registers the avatar once (`on_start`), then runs `sessions_per_user` sessions in a row, each
streaming the audio through the orchestrator over one gRPC bidirectional stream and receiving every
frame (`triton_session.run_session`). Every session is reported through Locust's request event
(`first_frame[<mode>]` with the first-frame delay, `session[<mode>]` with the whole session, the
per-session `SessionRecord` in the event's context), so Locust's own statistics and this module's
records come from the same events.

gRPC under gevent: importing Locust monkey-patches the standard library, so the client's threads and
queues become greenlets; `grpc.experimental.gevent.init_gevent()` makes gRPC's C core cooperate with
the gevent hub, so a greenlet waiting on the stream yields instead of blocking every other user. The
alternative, running the blocking client on native threads off the loop, breaks here: the
monkey-patched `threading`/`queue` objects the client creates inside those threads belong to gevent.
Because of the monkey-patching, this module is only imported in its own process: `sessions.run_locust`
starts it as `python -m ditto_triton.benchmarks.locust_sessions` and reads the JSON it writes.

    python -m ditto_triton.benchmarks.locust_sessions --url 127.0.0.1:8001 --users 2 --out run.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser
from locust.log import setup_logging

from ditto_triton.benchmarks.session_stats import MODES, summarize
from ditto_triton.benchmarks.sessions import check_loopback
from ditto_triton.benchmarks.triton_session import run_session
from ditto_triton.client import DittoClient, load_audio
from ditto_triton.protocol import CHUNK_SAMPLES, SAMPLE_RATE

grpc_gevent.init_gevent()  # before any channel exists

log = logging.getLogger(__name__)
REQUEST_TYPE = "grpc-stream"


@dataclass
class SessionPlan:
    """What every user does; set on `DittoSessionUser.plan` before a run."""

    image: bytes
    audio: Any  # np.ndarray, 16 kHz mono float32
    mode: str = "realtime"
    sessions_per_user: int = 1
    chunk_samples: int = CHUNK_SAMPLES
    crop: dict = field(default_factory=lambda: {"max_size": 512})
    options: dict | None = None
    timeout_s: float = 120.0


class DittoSessionUser(User):
    """One live client: register once, then `plan.sessions_per_user` streaming sessions in a row."""

    wait_time = constant(0)
    plan: SessionPlan | None = None
    finished_users = 0  # users that have run all their sessions (or failed to start)

    def on_start(self) -> None:
        plan = self._plan()
        self.sessions_done = 0
        start = time.perf_counter()
        try:
            # busy_retries=0: a refused session counts as failed, it is not retried into a later slot
            self.ditto = DittoClient(self.host, timeout_s=plan.timeout_s, busy_retries=0)
            self.avatar_id = self.ditto.register_avatar(plan.image, plan.crop)
        except Exception as exc:  # noqa: BLE001 - reported as a failed request
            self._fire("register_avatar", (time.perf_counter() - start) * 1e3, 0, exc)
            self._finish()
        self._fire("register_avatar", (time.perf_counter() - start) * 1e3, 0, None)

    @task
    def stream_session(self) -> None:
        plan = self._plan()
        record = run_session(
            self.ditto, self.avatar_id, plan.audio, plan.mode, chunk_samples=plan.chunk_samples, options=plan.options
        )
        summary = summarize(record)
        failure = RuntimeError(record.error or "incomplete session") if not summary["complete"] else None
        if summary["ffd_ms"] is not None:
            self._fire(f"first_frame[{plan.mode}]", summary["ffd_ms"], 0, None)
        total_ms = record.arrivals_s[-1] * 1e3 if record.arrivals_s else 0.0
        self._fire(f"session[{plan.mode}]", total_ms, summary["frames"], failure, {"record": record.to_dict()})
        self.sessions_done += 1
        if self.sessions_done >= plan.sessions_per_user:
            self._finish()

    def on_stop(self) -> None:
        ditto = getattr(self, "ditto", None)
        if ditto is not None:
            ditto.close()

    def _plan(self) -> SessionPlan:
        if self.plan is None:
            raise RuntimeError("DittoSessionUser.plan is not set; run through run_locust()")
        return self.plan

    def _finish(self) -> None:
        type(self).finished_users += 1
        raise StopUser()

    def _fire(self, name: str, ms: float, length: int, exc: BaseException | None, context: dict | None = None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context=context or {},
        )


def run_locust(url: str, users: int, plan: SessionPlan, time_limit_s: float) -> dict[str, Any]:
    """Run `users` concurrent users (all spawned within a second) until each has run its sessions,
    or `time_limit_s` passes (then unfinished sessions are lost and `timed_out` is set).

    Returns {"users", "mode", "records": [SessionRecord dicts], "locust": {name: stats}, "timed_out",
    "wall_s"}.
    """
    check_loopback(url)
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users}")
    DittoSessionUser.plan = plan
    DittoSessionUser.finished_users = 0
    env = Environment(user_classes=[DittoSessionUser], host=url)
    records: list[dict] = []
    failures: list[str] = []

    def on_request(name: str, exception: BaseException | None = None, context: dict | None = None, **_: Any) -> None:
        if context and "record" in context:
            records.append(context["record"])
        if exception is not None:
            failures.append(f"{name}: {exception}")

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    start = time.perf_counter()
    runner.start(users, spawn_rate=users)
    deadline = start + time_limit_s
    while DittoSessionUser.finished_users < users and time.perf_counter() < deadline:
        gevent.sleep(0.1)
    timed_out = DittoSessionUser.finished_users < users
    runner.quit()
    stats = {
        entry.name: {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "median_ms": entry.median_response_time,
            "p95_ms": entry.get_response_time_percentile(0.95),
            "max_ms": entry.max_response_time,
        }
        for entry in env.stats.entries.values()
    }
    return {
        "users": users,
        "mode": plan.mode,
        "records": records,
        "locust": stats,
        "failures": failures,
        "timed_out": timed_out,
        "wall_s": round(time.perf_counter() - start, 2),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Concurrent Ditto streaming sessions with Locust (headless).")
    parser.add_argument("--url", required=True, help="tritonserver gRPC address on loopback, e.g. 127.0.0.1:8001")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=None, help="cut the audio to this length")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--sessions-per-user", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="realtime")
    parser.add_argument("--chunk-samples", type=int, default=CHUNK_SAMPLES)
    parser.add_argument("--max-size", type=int, default=512, help="portrait long side for registration")
    parser.add_argument("--time-limit", type=float, default=300.0, help="stop after this many seconds")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("WARNING")
    audio = load_audio(args.audio)
    if args.seconds:
        audio = audio[: int(args.seconds * SAMPLE_RATE)]
    plan = SessionPlan(
        image=args.image.read_bytes(),
        audio=audio,
        mode=args.mode,
        sessions_per_user=args.sessions_per_user,
        chunk_samples=args.chunk_samples,
        crop={"max_size": args.max_size},
    )
    result = run_locust(args.url, args.users, plan, args.time_limit)
    result["plan"] = {k: v for k, v in asdict(plan).items() if k not in ("image", "audio")}
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    # Skip interpreter teardown: tritonclient closes its gRPC channels again in __del__, and under
    # gevent that second close can block forever at exit. Everything is written by now.
    os._exit(code)
