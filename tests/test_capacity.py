"""ditto-capacity: the replica arithmetic, reading benchmark results, the page and the Helm values it prints,
its errors on bad input. Numbers are asserted on synthetic runs only; against the committed
benchmarks/results/ the tests check the schema and that deploy/CAPACITY.md is exactly what the tool writes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ditto_triton.benchmarks import RESULTS_DIR
from ditto_triton.benchmarks.criteria import load_thresholds
from ditto_triton.benchmarks.results import ResultsError, load_results
from ditto_triton.deploy import ASSETS_DIR
from ditto_triton.deploy.capacity import CapacityError, helm_values, plan, plan_for
from ditto_triton.deploy.capacity_cli import main
from ditto_triton.deploy.capacity_page import PAGE_COMMAND, render_page

PAGE = ASSETS_DIR / "CAPACITY.md"
COMMITTED_RUNS = sorted(p.parent for p in RESULTS_DIR.glob("*/results.json"))


# --- plan() arithmetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "users", "headroom", "target", "replicas"),
    [
        (8, 100, 0.25, 6, 17),  # floor(8 × 0.75) = 6, ceil(100 / 6) = 17
        (8, 60, 0.25, 6, 10),  # exactly divisible
        (8, 0, 0.25, 6, 0),  # no users, no replicas needed
        (8, 60, 0.0, 8, 8),  # no headroom: target = limit, ceil(60 / 8) = 8
        (8, 64, 0.0, 8, 8),
        (1, 7, 0.25, 1, 7),  # floor(0.75) = 0 is raised to 1
        (3, 10, 0.5, 1, 10),  # floor(1.5) = 1
        (10, 20, 0.8, 2, 10),  # 10 × (1 − 0.8) is 1.999… in floating point; the target is still 2
        (16, 1000, 0.25, 12, 84),
    ],
)
def test_plan_replicas_and_targets(sessions, users, headroom, target, replicas):
    p = plan(sessions, users, headroom)
    assert p.target_sessions_per_replica == p.hpa_target == target
    assert p.replicas == replicas
    assert p.admission_limit == sessions
    assert p.session_capacity == replicas * sessions


def test_plan_helm_values_autoscale_when_the_target_leaves_room():
    p = plan(8, 100)
    assert p.hpa_can_scale_up  # 8 > 6 × 1.1
    assert helm_values(p) == {
        "sessions": {"maxPerReplica": 8},
        "autoscaling": {"targetSessionsPerReplica": 6, "minReplicas": 1, "maxReplicas": 17},
    }


def test_plan_without_room_for_the_hpa_is_a_fixed_size():
    # target = limit: the average active sessions can never exceed the target, so the HPA never adds a replica
    for p in (plan(8, 60, headroom=0.0), plan(1, 7)):
        assert not p.hpa_can_scale_up
        values = helm_values(p)["autoscaling"]
        assert values["minReplicas"] == values["maxReplicas"] == p.replicas
    # 10 × 1.1 = 11 is not below 11: within the HPA's tolerance, still no scale-up
    assert not plan(11, 10, headroom=0.05).hpa_can_scale_up
    assert plan(12, 10, headroom=0.1).hpa_can_scale_up  # target 10, 12 > 11


def test_plan_zero_users_keeps_one_replica_in_the_helm_values():
    values = helm_values(plan(8, 0))
    assert values["autoscaling"]["minReplicas"] == 1 and values["autoscaling"]["maxReplicas"] == 1


def test_plan_max_replicas_caps_the_helm_values_and_reports_a_shortfall():
    p = plan(8, 100, max_replicas=10)
    assert p.replicas == 17 and not p.fits
    assert helm_values(p)["autoscaling"]["maxReplicas"] == 10
    q = plan(8, 100, max_replicas=20)
    assert q.fits and helm_values(q)["autoscaling"] == {
        "targetSessionsPerReplica": 6,
        "minReplicas": 1,
        "maxReplicas": 20,
    }


def test_plan_memory_totals_at_the_admission_limit():
    p = plan(8, 100, gpu_mib_per_session=50.0, gpu_mib_base=3000.0, host_mb_per_session=30.0, host_mb_base=900.0)
    assert p.gpu_mib_per_replica == 3400.0  # 3000 + 50 × 8
    assert p.gpu_mib_total == 3400.0 * 17
    assert p.host_mb_per_replica == 1140.0
    assert p.host_mb_total == 1140.0 * 17
    bare = plan(8, 100)
    assert bare.gpu_mib_per_replica is None and bare.gpu_mib_total is None and bare.host_mb_total is None


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"sessions_per_replica": 8, "users": -1}, "users"),
        ({"sessions_per_replica": 0, "users": 10}, "sessions_per_replica"),
        ({"sessions_per_replica": -3, "users": 10}, "sessions_per_replica"),
        ({"sessions_per_replica": 2.5, "users": 10}, "sessions_per_replica"),
        ({"sessions_per_replica": 8, "users": 10, "headroom": 1.0}, "headroom"),
        ({"sessions_per_replica": 8, "users": 10, "headroom": -0.1}, "headroom"),
        ({"sessions_per_replica": 8, "users": 10, "max_replicas": 0}, "max_replicas"),
    ],
)
def test_plan_rejects_nonsense_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        plan(**kwargs)


# --- the committed runs: schema only -----------------------------------------------------------------


def test_committed_runs_are_there():
    assert COMMITTED_RUNS, f"no results.json under {RESULTS_DIR}"


@pytest.mark.parametrize("run_dir", COMMITTED_RUNS, ids=lambda p: p.name)
def test_load_results_matches_the_committed_json(run_dir):
    raw = json.loads((run_dir / "results.json").read_text())
    (run,) = load_results(run_dir)
    assert run.run == run_dir.name
    assert run.max_realtime_sessions == run.sessions_per_replica == raw["max_realtime_sessions"]
    assert (run.device, run.profile, run.flavor, run.date, run.git_sha) == (
        raw["device"], raw["profile"], raw["flavor"], raw["date"], raw["git_sha"],
    )  # fmt: skip
    assert run.concurrency_levels == tuple(lv["concurrency"] for lv in raw["sessions"])
    assert run.measured_up_to == max(lv["concurrency"] for lv in raw["sessions"])
    by_level = {lv["concurrency"]: lv for lv in raw["sessions"]}
    if raw["max_realtime_sessions"]:
        assert run.fps_min_at_max == by_level[raw["max_realtime_sessions"]]["fps_min"]
    else:
        assert run.fps_min_at_max is None
    # the same file given directly gives the same run
    assert load_results(run_dir / "results.json") == [run]


# --- synthetic results ----------------------------------------------------------------------------------


def _level(concurrency: int, realtime: bool, fps: float, gpu: float | None, failed: int = 0) -> dict:
    checks = [
        {"name": "frames/s, slowest session", "passed": fps >= 25.0},
        {"name": "failed sessions", "passed": failed == 0},
    ]
    return {"concurrency": concurrency, "sessions": concurrency, "failed_sessions": failed, "fps_min": fps,
            "late_frame_ratio": 0.0, "ffd_ms_p95": 900.0, "realtime": realtime, "checks": checks, "gpu_memory_mib": gpu}  # fmt: skip


def _results(levels: list[dict], max_realtime: int, **extra) -> dict:
    return {
        "profile": "full", "flavor": "torch", "device": "Test GPU 80GB", "host": "gpu-host", "date": "2027-01-02",
        "git_sha": "a" * 40, "thresholds": {"fps_min": 25.0, "late_frame_ratio_max": 0.01, "ffd_ms_p95_realtime_max": 1500.0},
        "sessions": levels, "max_realtime_sessions": max_realtime, **extra,
    }  # fmt: skip


def _write(tmp_path: Path, name: str, results: dict) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def _gpu_run(tmp_path: Path, name: str = "2027-01-02-gpu-host-full-torch") -> Path:
    # peaks 3000 + 50 × (n − 1) MiB: 50 MiB per extra session, 2950 MiB at zero sessions
    levels = [_level(n, n <= 6, 30.0 - (n > 6) * 6, 2950.0 + 50.0 * n) for n in range(1, 8)]
    return _write(tmp_path, name, _results(levels, 6))


def _cpu_run(tmp_path: Path, name: str, realtime_up_to: int, measured: int, flavor: str = "python-ort") -> Path:
    """A tiny-profile run on a CPU (no GPU samples): real time up to `realtime_up_to` of `measured` levels."""
    levels = [
        _level(n, n <= realtime_up_to, 25.9 if n <= realtime_up_to else 13.2, None) for n in range(1, measured + 1)
    ]
    cpu = {"profile": "tiny", "flavor": flavor, "device": "Test CPU (2 cores)", "host": "cpu-host"}
    return _write(tmp_path, name, {**_results(levels, realtime_up_to), **cpu})


def _soak(run_dir: Path, sessions: int, idle_mb: float, loaded_mb: float, **extra) -> None:
    soak = {"profile": "tiny", "flavor": "python-ort", "sessions": sessions, "git_sha": "b" * 40,
            "memory": {"baseline_mb": loaded_mb}, "memory_samples": [[0.0, idle_mb], [1.0, idle_mb + 5.0]], **extra}  # fmt: skip
    (run_dir / "soak.json").write_text(json.dumps(soak))


def _cpu_runs(tmp_path: Path) -> Path:
    """Two CPU runs as `make bench` writes them on two cores: one session in real time (with a soak), none."""
    _soak(_cpu_run(tmp_path, "a-cpu-tiny-python-ort", 1, 3), 8, 934.2, 1176.0)
    _cpu_run(tmp_path, "b-cpu-tiny-torch", 0, 2, flavor="torch")
    return tmp_path


def test_a_sweep_gives_sessions_per_replica_and_the_first_failing_level(tmp_path):
    one, zero = load_results(_cpu_runs(tmp_path))
    assert (one.sessions_per_replica, one.concurrency_levels, one.fps_min_at_max) == (1, (1, 2, 3), 25.9)
    assert one.first_failing is not None and one.first_failing.concurrency == 2
    assert (zero.sessions_per_replica, zero.concurrency_levels, zero.fps_min_at_max) == (0, (1, 2), None)
    assert zero.first_failing is not None and zero.first_failing.concurrency == 1
    assert not one.gpu_measured and not zero.gpu_measured


def test_host_memory_comes_from_the_runs_soak(tmp_path):
    one, zero = load_results(_cpu_runs(tmp_path))
    host = one.host_memory
    assert host is not None and (host.sessions, host.mb_idle, host.mb_loaded) == (8, 934.2, 1176.0)
    assert host.mb_per_session == round((1176.0 - 934.2) / 8, 1) == 30.2
    assert host.source.name == "soak.json" and host.git_sha == "b" * 40
    assert zero.host_memory is None  # no soak in that run
    assert plan_for(one, 10).host_mb_per_replica == 964.4  # 934.2 idle + 30.2 for one session at the limit of 1


def test_a_soak_of_another_profile_or_without_memory_is_ignored(tmp_path):
    run_dir = _cpu_run(tmp_path, "r", 1, 2)
    _soak(run_dir, 8, 900.0, 1000.0, profile="full")
    assert load_results(run_dir)[0].host_memory is None
    _soak(run_dir, 8, 900.0, 1000.0, memory={"error": "no samples"})
    assert load_results(run_dir)[0].host_memory is None


def test_a_run_without_real_time_sessions_cannot_be_planned(tmp_path):
    (zero,) = load_results(_cpu_run(tmp_path, "r", 0, 2))
    with pytest.raises(CapacityError, match="no real-time session"):
        plan_for(zero, 10)


def test_synthetic_gpu_run_gives_memory_per_session(tmp_path):
    (run,) = load_results(_gpu_run(tmp_path))
    assert run.gpu_measured and run.gpu_memory is not None
    assert run.gpu_memory.mib_per_session == 50.0 and run.gpu_memory.mib_at_zero == 2950.0
    assert run.gpu_memory.points == tuple((n, 2950.0 + 50.0 * n) for n in range(1, 8))
    assert (run.sessions_per_replica, run.measured_up_to, run.fps_min_at_max) == (6, 7, 30.0)
    p = plan_for(run, 100)
    assert (p.hpa_target, p.replicas) == (4, 25)  # floor(6 × 0.75) = 4, ceil(100 / 4) = 25
    assert p.gpu_mib_per_replica == 2950.0 + 50.0 * 6
    assert p.gpu_mib_total == (2950.0 + 50.0 * 6) * 25


def test_recorded_gpu_memory_is_used_when_levels_lack_samples(tmp_path):
    levels = [_level(1, True, 40.0, None), _level(2, False, 20.0, None)]
    recorded = {"mib_per_session": 42.5, "mib_at_zero": 5000.0, "points": [[1, 5042.5], [2, 5085.0]]}
    (run,) = load_results(_write(tmp_path, "r", _results(levels, 1, gpu_memory_per_session=recorded)))
    assert run.gpu_memory is not None and (run.gpu_memory.mib_per_session, run.gpu_memory.mib_at_zero) == (42.5, 5000.0)


def test_a_parent_directory_gives_every_run_sorted(tmp_path):
    _gpu_run(tmp_path, "b-run")
    _write(tmp_path, "a-run", _results([_level(1, True, 26.0, None), _level(2, False, 20.0, None)], 1))
    (tmp_path / "not-a-run").mkdir()
    runs = load_results(tmp_path)
    assert [r.run for r in runs] == ["a-run", "b-run"]
    assert runs[0].gpu_memory is None and runs[0].sessions_per_replica == 1


def test_the_page_of_a_gpu_run_has_its_numbers_and_no_cpu_warning(tmp_path):
    page = render_page(load_results(_gpu_run(tmp_path)), users_rows=(10, 100))
    assert "No GPU has been measured yet" not in page
    assert (
        "| 2027-01-02-gpu-host-full-torch | Test GPU 80GB | full | torch | 2027-01-02 | `aaaaaaaaaaaa` | 7 | 6 | 30 | 50 MiB (base 2,950 MiB) |"
        in page
    )
    # 100 users: 25 replicas of target 4, limit 6; GPU 3,250 MiB per replica at the limit, 81,250 MiB in all
    assert "| 100 | 25 | 4 | 6 | 150 | 3,250 MiB | 81,250 MiB | not measured | not measured |" in page
    assert "maxReplicas: 25" in page and "minReplicas: 1" in page


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("max_realtime_sessions"), "missing key 'max_realtime_sessions'"),
        (lambda r: r.pop("device"), "missing key 'device'"),
        (lambda r: r["sessions"][1].pop("realtime"), r"sessions\[1\]: missing key 'realtime'"),
        (lambda r: r.update(max_realtime_sessions=7), "max_realtime_sessions is 7 but the sweep levels give 6"),
        (lambda r: r.update(max_realtime_sessions="6"), "max_realtime_sessions: expected an integer"),
        (lambda r: r.update(sessions={"error": "RuntimeError: boom"}), "the session sweep did not run"),
        (lambda r: r.update(sessions=[]), "'sessions' must be a non-empty list"),
    ],
)
def test_malformed_results_name_the_file_and_the_problem(tmp_path, mutate, message):
    run_dir = _gpu_run(tmp_path)
    raw = json.loads((run_dir / "results.json").read_text())
    mutate(raw)
    (run_dir / "results.json").write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=message) as err:
        load_results(run_dir)
    assert str(run_dir / "results.json") in str(err.value)


def test_missing_paths_and_invalid_json_are_errors(tmp_path):
    with pytest.raises(ResultsError, match="no such file or directory"):
        load_results(tmp_path / "nope")
    with pytest.raises(ResultsError, match="no results.json"):
        load_results(tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match=rf"{bad}: not valid JSON"):
        load_results(bad)


# --- the page -----------------------------------------------------------------------------------------


def test_committed_capacity_page_is_what_the_tool_writes():
    expected = render_page(load_results(RESULTS_DIR))
    assert PAGE.read_text() == expected, f"deploy/CAPACITY.md is stale: run `{PAGE_COMMAND}`"


def test_committed_page_has_a_row_per_committed_run():
    page = PAGE.read_text()
    for run_dir in COMMITTED_RUNS:
        raw = json.loads((run_dir / "results.json").read_text())
        assert f"| {run_dir.name} | {raw['device']} | {raw['profile']} | {raw['flavor']} | {raw['date']} |" in page
        assert f"### {run_dir.name}\n" in page


def test_the_page_states_its_sources(tmp_path):
    page = render_page(load_results(_cpu_runs(tmp_path)))
    th = load_thresholds()
    assert f"≥ {th['fps_min']:g} frames/s" in page
    assert f"≤ {th['ffd_ms_p95_realtime_max']:g} ms" in page
    assert f"≤ {th['late_frame_ratio_max']:g}" in page
    assert "make bench-gpu" in page and "ditto-capacity --write-page deploy/CAPACITY.md" in page
    assert "ditto-capacity --results benchmarks/results/<run> --users 200" in page
    assert "$(ditto-capacity --results benchmarks/results/<run> --users 1000 --format set)" in page


def test_the_page_of_cpu_runs_warns_that_no_gpu_was_measured(tmp_path):
    page = render_page(load_results(_cpu_runs(tmp_path)))
    assert "No GPU has been measured yet" in page
    assert "measured on Test CPU (2 cores) (host `cpu-host`) with the tiny profile — the tiny profile is" in page
    assert "**No replica count**" in page  # the torch run: 0 real-time sessions
    assert "| 1000 | 1000 | 1 | 1 | 1000 |" in page  # python-ort: 1 session per replica, a fixed size
    assert "`minReplicas` = `maxReplicas` = replicas (a fixed size)" in page
    assert "≤ 30.2 MB (soak, 8 sessions)" in page


def test_the_page_notes_runs_judged_with_other_thresholds(tmp_path):
    run_dir = _gpu_run(tmp_path)
    raw = json.loads((run_dir / "results.json").read_text())
    raw["thresholds"]["fps_min"] = 20.0
    (run_dir / "results.json").write_text(json.dumps(raw))
    page = render_page(load_results(run_dir), users_rows=(10,))
    assert f"Note: {run_dir.name} was judged with other thresholds" in page


def test_no_runs_is_no_page():
    with pytest.raises(CapacityError, match="no benchmark runs"):
        render_page([])


# --- the CLI --------------------------------------------------------------------------------------------


def test_cli_set_flags_parse_back_to_the_plan(tmp_path, capsys):
    run_dir = _gpu_run(tmp_path)
    assert main(["--results", str(run_dir), "--users", "100", "--format", "set"]) == 0
    tokens = shlex.split(capsys.readouterr().out)
    assert tokens[::2] == ["--set"] * 4
    parsed = dict(t.split("=", 1) for t in tokens[1::2])
    values = helm_values(plan(6, 100))
    assert parsed == {
        "sessions.maxPerReplica": str(values["sessions"]["maxPerReplica"]),
        **{f"autoscaling.{k}": str(v) for k, v in values["autoscaling"].items()},
    }
    assert parsed["sessions.maxPerReplica"] == "6" and parsed["autoscaling.maxReplicas"] == "25"


def test_cli_yaml_and_headroom(tmp_path, capsys):
    run_dir = _gpu_run(tmp_path)
    assert main(["--results", str(run_dir), "--users", "100", "--headroom", "0", "--format", "yaml"]) == 0
    assert capsys.readouterr().out == (
        "sessions:\n  maxPerReplica: 6\nautoscaling:\n  targetSessionsPerReplica: 6\n  minReplicas: 17\n  maxReplicas: 17\n"
    )


def test_cli_text_plan_of_a_one_session_run(tmp_path, capsys):
    run_dir = _cpu_run(tmp_path, "r", 1, 3)
    assert main(["--results", str(run_dir), "--users", "200"]) == 0
    out = capsys.readouterr().out
    assert "sessions per replica in real time: 1 (sweep measured up to 3)" in out
    assert "-> 200 replica(s)" in out and "--set autoscaling.maxReplicas=200" in out


def test_cli_writes_the_page(tmp_path, capsys):
    page = tmp_path / "CAPACITY.md"
    assert main(["--results", str(RESULTS_DIR), "--write-page", str(page)]) == 0
    assert page.read_text() == PAGE.read_text()
    assert capsys.readouterr().out.strip() == f"wrote {page}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "-5"], "users must be an integer >= 0"),
        (["--users", "10", "--headroom", "1.5"], "headroom must be in [0, 1)"),
        (["--users", "ten"], "argument --users: invalid int value"),
        (["--format", "set"], "--format set needs --users"),
        (["--users", "10", "--format", "yaml"], "holds 2 runs"),
        (["--results", "b-cpu-tiny-torch", "--users", "10", "--format", "set"], "no real-time session"),
        (["--results", "nope"], "nope: no such file or directory"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(_cpu_runs(tmp_path))
    argv = argv if "--results" in argv else ["--results", ".", *argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_malformed_results_file_exits_2_naming_the_file(tmp_path):
    run_dir = _gpu_run(tmp_path)
    raw = json.loads((run_dir / "results.json").read_text())
    del raw["sessions"]
    (run_dir / "results.json").write_text(json.dumps(raw))
    script = Path(sys.executable).with_name("ditto-capacity")
    proc = subprocess.run(
        [str(script), "--results", str(run_dir), "--users", "10"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"ditto-capacity: {run_dir / 'results.json'}: missing key 'sessions'\n"


def test_helm_values_always_satisfy_the_charts_rules():
    # the chart (deploy/helm/ditto-triton) fails on target > maxPerReplica or minReplicas > maxReplicas; its
    # schema wants every value >= 1
    for sessions in (1, 2, 3, 5, 8, 16, 32):
        for users in (0, 1, 7, 100, 999):
            for headroom in (0.0, 0.1, 0.25, 0.5, 0.9):
                for cap in (None, 1, 10):
                    values = helm_values(plan(sessions, users, headroom, cap))
                    auto = values["autoscaling"]
                    assert 1 <= auto["targetSessionsPerReplica"] <= values["sessions"]["maxPerReplica"] == sessions
                    assert 1 <= auto["minReplicas"] <= auto["maxReplicas"]
                    if cap is not None:
                        assert auto["maxReplicas"] == cap
