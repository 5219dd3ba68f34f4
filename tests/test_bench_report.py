"""The benchmark report writer: results.json with the documented fields, report.md and readable plots
from a suite result (no server: the numbers are given), and a part that failed is reported, not fatal."""

from __future__ import annotations

import json

from PIL import Image

from ditto_triton.benchmarks.report import write_report

RESULTS = {
    "profile": "tiny",
    "flavor": "python-ort",
    "device": "test CPU (2 cores)",
    "host": "ci",
    "date": "2026-01-01",
    "versions": {"onnxruntime": "1.32.0"},
    "git_sha": "0" * 40,
    "thresholds": {"fps_min": 25.0, "ffd_ms_p95_realtime_max": 1500.0, "ffd_ms_p95_full_audio_max": 400.0},
    "stages": {
        "decoder": {
            "1": {"p50_ms": 7.6, "p95_ms": 10.3, "infer_per_s": 125.5},
            "4": {"p50_ms": 16.2, "p95_ms": 19.8, "infer_per_s": 242.1},
        },
        "warp_network": {"1": {"p50_ms": 10.5, "p95_ms": 11.5, "infer_per_s": 96.6}},
    },
    "sessions": [
        {
            "concurrency": 1,
            "ffd_ms_p50": 950.0,
            "ffd_ms_p95": 990.0,
            "fps_min": 26.2,
            "fps_mean": 26.2,
            "late_frame_ratio": 0.0,
            "rtf": 1.02,
            "failed_sessions": 0,
            "realtime": True,
        },
        {
            "concurrency": 2,
            "ffd_ms_p50": 1000.0,
            "ffd_ms_p95": 1035.0,
            "fps_min": 25.5,
            "fps_mean": 25.6,
            "late_frame_ratio": 0.02,
            "rtf": 1.04,
            "failed_sessions": 0,
            "realtime": False,
            "checks": [{"name": "late-frame ratio, worst session", "passed": False}],
        },
    ],
    "max_realtime_sessions": 1,
    "ratios": {"triton_over_inprocess": 0.76, "ort_over_torch": {"decoder": 3.3, "warp_network": 1.3}},
    "throughput": {"triton_fps": 65.3, "inprocess_fps": 86.4},
    "full": {"error": "RuntimeError: out of memory"},
}
REQUIRED = (
    "profile",
    "flavor",
    "device",
    "versions",
    "git_sha",
    "stages",
    "sessions",
    "max_realtime_sessions",
    "ratios",
)


def test_report_has_the_documented_fields_and_plots(tmp_path):
    paths = write_report(RESULTS, tmp_path, {"decoder": [7.0, 7.5, 8.0, 12.0], "warp_network": [10.0, 10.4, 11.9]})
    written = json.loads((tmp_path / "results.json").read_text())
    assert all(key in written for key in REQUIRED)
    assert written["sessions"][0].keys() >= {
        "concurrency",
        "ffd_ms_p50",
        "ffd_ms_p95",
        "fps_min",
        "late_frame_ratio",
        "rtf",
    }
    assert set(written["ratios"]) == {"triton_over_inprocess", "ort_over_torch"}
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert {"sessions_fps.png", "sessions_ffd.png", "stage_latency_cdf.png"} <= set(pngs)
    for name in pngs:
        with Image.open(tmp_path / name) as img:
            assert img.width >= 600 and img.height >= 400  # a readable size, not an empty stub
    report = (tmp_path / "report.md").read_text()
    assert "Largest number of real-time sessions: 1" in report
    assert "out of memory" in report  # the failed part is reported
    assert "Level 2 missed: late-frame ratio, worst session" in report
    assert all(p.exists() for p in paths.values())


def test_batch_scaling_and_gpu_memory_per_session(tmp_path):
    from ditto_triton.benchmarks.batch_scaling import batch_scaling
    from ditto_triton.benchmarks.gpu_memory import per_extra_session

    scaling = batch_scaling(RESULTS["stages"])
    decoder = scaling["decoder"]
    assert decoder["by_batch"][1] == {"frames_per_s": 125.5, "ms_per_frame": 7.968}
    assert decoder["best_batch"] == 4 and decoder["best_ms"] == 4.131 and decoder["speedup"] == 1.93
    assert scaling["warp_network"]["best_batch"] == 1 and "render_chain" not in scaling
    assert batch_scaling({"decoder": {"error": "down"}}) == {}
    levels = [{"concurrency": n, "gpu_memory_mib": 9000.0 + 40.0 * n} for n in (1, 2, 4)]
    memory = per_extra_session(levels)
    assert memory["mib_per_session"] == 40.0 and memory["mib_at_zero"] == 9000.0
    assert per_extra_session([{"concurrency": 1, "gpu_memory_mib": None}]) is None
    write_report({**RESULTS, "batch_scaling": scaling, "gpu_memory_per_session": memory}, tmp_path, {})
    report = (tmp_path / "report.md").read_text()
    assert "decoder: 7.968 ms/frame at batch 1, 4.131 ms/frame at batch 4 (1.93×)" in report
    assert "GPU memory per extra session: 40.0 MiB" in report


FRAME_FORMATS = {
    "audio_s": 4.0,
    "repeats": 3,
    "codec_frames": 16,
    "cases": {
        "512x512": {
            "codec": {
                "rgb": {"bytes_per_frame": 786432, "mbit_per_s_at_25fps": 157.3, "encode_cpu_ms": 0.2,
                        "decode_cpu_ms": 0.0, "lossless": True, "psnr_db_worst": None},
                "jpeg q90": {"bytes_per_frame": 73290, "mbit_per_s_at_25fps": 14.7, "encode_cpu_ms": 1.2,
                             "decode_cpu_ms": 1.5, "lossless": False, "psnr_db_worst": 32.21},
            },
            "sessions": {
                "rgb": {"fps": 30.1, "fps_over_rgb": 1.0, "wall_s": 3.5, "server_cpu_ms_per_frame": 49.2,
                        "client_cpu_ms_per_frame": 2.0},
                "jpeg": {"fps": 28.4, "fps_over_rgb": 0.944, "wall_s": 3.7, "server_cpu_ms_per_frame": 52.0,
                         "client_cpu_ms_per_frame": 3.4},
            },
        }
    },
}  # fmt: skip


def test_frame_formats_section(tmp_path):
    write_report({**RESULTS, "frame_formats": FRAME_FORMATS}, tmp_path, {})
    report = (tmp_path / "report.md").read_text()
    assert "## Frame formats" in report and "### 512x512 frames" in report
    assert "| jpeg q90 | 73290 | 14.70 | 1.20 | 1.50 | 32.21 |" in report
    assert "| rgb | 786432 | 157.30 | 0.20 | 0.00 | lossless |" in report
    assert "| jpeg | 28.40 | 0.94 | 3.70 | 52.00 | 3.40 |" in report
    write_report({**RESULTS, "frame_formats": {"error": "RuntimeError: png session incomplete"}}, tmp_path, {})
    assert "Not measured: RuntimeError: png session incomplete" in (tmp_path / "report.md").read_text()


def test_full_profile_section_shows_the_cpu_runner_choice():
    from ditto_triton.benchmarks.report import render_markdown

    full = {
        "stages": {"warp_network": {"ort_ms": 2308.4, "samples_ms": [2308.4]}},
        "per_frame_ms": 3400.0,
        "cpu_runners": {
            "margin": 0.05,
            "stages": {
                "warp_network": {"torch_ms": 2036.4, "ort_ms": 2308.4, "served_by": "torch"},
                "decoder": {"torch_ms": 1100.0, "ort_ms": 1000.0, "served_by": "ort"},
            },
        },
    }
    text = render_markdown({"profile": "tiny", "flavor": "python-ort", "full": full}, {})
    assert "| warp_network | 2036.40 | 2308.40 | torch |" in text
    assert "| decoder | 1100.00 | 1000.00 | ort |" in text
    assert "faster by more than 5%" in text
