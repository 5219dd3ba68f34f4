"""The CPU flavor's runner per stage (`ditto-serve --cpu-runners`): ONNX Runtime by default, PyTorch where the
export's timing found it faster ('auto') or where asked, and a session served that way."""

from __future__ import annotations

import pytest
from frame_compare import assert_same_pictures

from ditto_triton.client import DittoClient
from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.cpu_runners import cpu_runners, faster_cpu_runners
from ditto_triton.model_repository.render import render_repository

STAGES = ("warp_network", "decoder", "hubert")


def manifest_with(timings: dict[str, tuple[float, float] | None]) -> dict:
    """A manifest whose stages have PyTorch weights (HuBERT too) and these (torch_ms, ort_ms) timings."""
    stages = {}
    for name, timing in timings.items():
        entry = {"weights": {"kind": "synthetic"}}
        if timing is not None:
            entry["timing"] = {"torch_ms": timing[0], "ort_ms": timing[1]}
        stages[name] = entry
    return {"stages": stages}


def test_auto_picks_pytorch_only_where_it_is_clearly_faster():
    manifest = manifest_with({"warp_network": (2036.0, 2308.0), "decoder": (990.0, 1000.0), "hubert": (1.0, 9.0)})
    assert faster_cpu_runners(manifest) == {"warp_network": "torch", "decoder": "ort", "hubert": "ort"}
    assert cpu_runners("auto", manifest) == faster_cpu_runners(manifest)
    assert set(cpu_runners(None, manifest).values()) == set(cpu_runners("ort", manifest).values()) == {"ort"}


def test_auto_without_the_exports_timing_says_how_to_get_it():
    with pytest.raises(ValueError, match=r"ditto-export --timing"):
        faster_cpu_runners(manifest_with({"warp_network": None, "decoder": (1.0, 2.0)}))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("warp_network=tensorrt", "runs on one of"),
        ("warp=torch", "no stage 'warp'"),
        ("hubert=torch", "cannot run on PyTorch"),
        ("warp_network", "STAGE=RUNNER"),
        ("fast", "STAGE=RUNNER"),
    ],
)
def test_a_bad_choice_is_refused_naming_it(spec, message):
    with pytest.raises(ValueError, match=message):
        cpu_runners(spec, manifest_with(dict.fromkeys(STAGES, (1.0, 2.0))))


def test_an_explicit_choice_sets_only_the_named_stages():
    manifest = manifest_with(dict.fromkeys(STAGES, (1.0, 2.0)))
    assert cpu_runners("warp_network=torch, decoder=ort", manifest) == {
        "warp_network": "torch",
        "decoder": "ort",
        "hubert": "ort",
    }


@pytest.fixture(scope="module")
def mixed_server(tiny_export, triton_server_factory, tmp_path_factory):
    """A python-ort server whose warp network runs on PyTorch (CPU), the rest on ONNX Runtime."""
    repo = render_repository(
        tiny_export,
        tmp_path_factory.mktemp("mixed") / "repo",
        "python-ort",
        cpu_runner_choice={"warp_network": "torch"},
    )
    return repo, triton_server_factory(repo)


def test_the_chosen_stage_is_served_by_pytorch_and_the_frames_are_the_same(mixed_server, server, portrait, speech16k):
    repo, mixed = mixed_server
    warp = pbtxt.read_config(repo / "warp_network")
    assert warp.parameters["runner"].string_value == "torch" and (repo / "warp_network/1/model.pth").is_file()
    assert "runner" not in pbtxt.read_config(repo / "decoder").parameters
    audio = speech16k[: 2 * 16000]
    frames = {}
    for name, srv in (("ort", server), ("mixed", mixed)):
        with DittoClient(srv.grpc_url) as client:
            avatar = client.register_avatar(portrait, {"max_size": 256})
            frames[name] = [f.rgb for f in client.stream(avatar, audio)]
    assert len(frames["mixed"]) == len(frames["ort"]) == 50
    assert_same_pictures(frames["mixed"], frames["ort"])


def test_auto_on_an_export_made_without_timing_is_refused(tiny_export):
    with pytest.raises(ValueError, match="--timing"):
        render_repository(tiny_export, tiny_export.parent / "auto-repo", "python-ort", cpu_runner_choice="auto")
