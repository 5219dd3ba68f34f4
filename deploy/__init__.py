"""Deployment: the capacity plan and page (`ditto-capacity`) and the Helm chart's offline checks.

`ASSETS_DIR` is the folder of the deployment files (the Helm chart under helm/, the Dockerfile,
compose.yaml, the Prometheus adapter values, CAPACITY.md), named here once.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
