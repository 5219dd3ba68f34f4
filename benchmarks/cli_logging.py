"""The benchmarks' command-line logging: their own steps at INFO with the time, the server's launcher quieter."""

from __future__ import annotations

import logging


def configure() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("ditto_triton.model_repository").setLevel(logging.WARNING)
