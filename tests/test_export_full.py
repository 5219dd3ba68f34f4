"""Full-size (Ditto's real sizes) export and parity. Slow: run with `make test-slow`."""

import pytest

from ditto_triton.export.parity import TOLERANCE
from ditto_triton.export.pipeline import ExportOptions, export_all
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import FULL
from ditto_triton.stages import STAGE_ORDER

pytestmark = pytest.mark.slow


def test_full_profile_exports_and_matches_pytorch(tmp_path):
    export_all(ExportOptions(profile=FULL, weights="synthetic", seed=0, out=tmp_path))
    stages = read_manifest(tmp_path)["stages"]
    assert list(stages) == list(STAGE_ORDER)
    for name, entry in stages.items():
        worst = max(e for errors in entry["parity"].values() for e in errors.values())
        assert worst <= TOLERANCE, (name, worst)
