"""The torch runner (the GPU flavor without TensorRT, and the GPU flavors' warp network) on the CPU:
the same code path as on CUDA with device cpu. Each stage against the exported ONNX graph, its
parameters, the fp32 GridSample under autocast, and a whole session through a real tritonserver
serving the torch flavor. On a machine with CUDA the fp16 and CUDA-graph tests run too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from frame_compare import assert_same_pictures
from google.protobuf.json_format import MessageToDict

from ditto_triton.client import DittoClient
from ditto_triton.export.networks.warp_network import grid_sample_fp32
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.export.sample_inputs import HUBERT_WINDOW, sample_inputs
from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer
from ditto_triton.model_repository.stage_runtime import StageRunner
from ditto_triton.model_repository.torch_parameters import TorchParameters
from ditto_triton.model_repository.torch_runtime import TorchStageRunner
from ditto_triton.profiles import TINY
from ditto_triton.stages import STAGE_ORDER, stage_specs
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.reference import render_audio

SPECS = stage_specs(TINY)
CUDA = torch.cuda.is_available()


def config_dict(repo, stage: str) -> dict:
    """A config as the python backend hands it to `initialize` (JSON field names)."""
    return MessageToDict(pbtxt.read_config(repo / stage), preserving_proto_field_name=True)


@pytest.fixture(scope="module")
def repos(tiny_export, tmp_path_factory):
    torch_repo = render_repository(tiny_export, tmp_path_factory.mktemp("t") / "r", "torch", instance_kind="cpu")
    ort_repo = render_repository(tiny_export, tmp_path_factory.mktemp("o") / "r", "python-ort")
    return torch_repo, ort_repo


@pytest.fixture(scope="module")
def gpu_repo(tiny_export, tmp_path_factory):
    """The torch flavor as rendered for GPUs (HuBERT too runs PyTorch there)."""
    return render_repository(tiny_export, tmp_path_factory.mktemp("g") / "r", "torch", include_services=False)


def on_cpu(config: dict) -> dict:
    params = {**config["parameters"], "device": {"string_value": "cpu"}, "precision": {"string_value": "fp32"}}
    return {**config, "parameters": params}


def stage_request(stage: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    spec = SPECS[stage]
    if not spec.batch_dynamic:
        return sample_inputs(spec, seed=seed, samples=HUBERT_WINDOW)
    # batch-only tensors travel as (B, 1) on the wire (config dims [1], reshape [])
    return {k: (v.reshape(-1, 1) if v.ndim == 1 else v) for k, v in sample_inputs(spec, batch=batch, seed=seed).items()}


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_each_stage_matches_its_onnx_graph(stage, repos, gpu_repo):
    _, ort_repo = repos
    runner = TorchStageRunner(on_cpu(config_dict(gpu_repo, stage)), gpu_repo / stage / "1")
    reference = StageRunner(config_dict(ort_repo, stage), ort_repo / stage / "1")
    assert runner.device.type == "cpu" and runner.parameters.precision == "fp32"
    requests = [stage_request(stage, b, seed) for b, seed in ((2, 1), (1, 2))]  # batched together, split back
    if not SPECS[stage].batch_dynamic:
        requests = requests[:1]
    for got, want in zip(runner.run(requests), reference.run(requests)):
        assert not isinstance(got, Exception), got
        assert list(got) == SPECS[stage].output_names
        for name in got:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            scale = max(float(np.abs(want[name]).max()), 1e-6)
            assert float(np.abs(got[name] - want[name]).max()) / scale < 1e-5, name


def test_bad_requests_get_their_own_errors(repos):
    torch_repo, _ = repos
    runner = TorchStageRunner(config_dict(torch_repo, "decoder"), torch_repo / "decoder" / "1")
    good = stage_request("decoder", 1, 0)
    results = runner.run([good, {"feature": good["feature"][:, :3]}, {}])
    assert isinstance(results[0], dict)
    assert "expected shape" in str(results[1]) and "missing" in str(results[2])


def test_parameters_are_checked(repos):
    torch_repo, _ = repos
    config = config_dict(torch_repo, "warp_network")

    def with_params(**changes):
        params = {**config["parameters"], **{k: {"string_value": v} for k, v in changes.items()}}
        return {**config, "parameters": params}

    for changes, words in (
        ({"precision": "fp16"}, "fp16 needs a CUDA device"),
        ({"cuda_graphs": "true"}, "cuda_graphs needs a CUDA device"),
        ({"precision": "int8"}, "precision"),
        ({"device": "tpu"}, "device"),
        ({"checkpoint_file": "../model.pth"}, "checkpoint_file"),
        ({"onnx_file": "model.onnx"}, "unknown parameter"),
    ):
        with pytest.raises(ValueError, match=words):
            TorchParameters.from_config(with_params(**changes))
    if not CUDA:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            TorchStageRunner(with_params(device="cuda"), torch_repo / "warp_network" / "1")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        TorchStageRunner(with_params(checkpoint_file="other.pth"), torch_repo / "warp_network" / "1")


def test_grid_sample_stays_fp32_under_autocast():
    gen = torch.Generator().manual_seed(0)
    volume = torch.rand(2, 4, 4, 8, 8, generator=gen)
    grid = torch.rand(2, 3, 8, 8, 3, generator=gen) * 2 - 1
    plain = torch.nn.functional.grid_sample(volume, grid, align_corners=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pinned = grid_sample_fp32(volume.bfloat16(), grid.bfloat16())
    assert pinned.dtype == torch.float32
    torch.testing.assert_close(pinned, grid_sample_fp32(volume.bfloat16().float(), grid.bfloat16().float()))
    torch.testing.assert_close(grid_sample_fp32(volume, grid), plain, rtol=0, atol=0)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("graphs", [False, True])
def test_fp16_on_cuda_stays_close_to_fp32(repos, tiny_export, tmp_path, graphs):
    repo = render_repository(tiny_export, tmp_path / "gpu", "torch", include_services=False, cuda_graphs=graphs)
    _, ort_repo = repos
    for stage in ("warp_network", "decoder", "lmdm"):
        runner = TorchStageRunner(config_dict(repo, stage), repo / stage / "1", device_id=0)
        reference = StageRunner(config_dict(ort_repo, stage), ort_repo / stage / "1")
        for batch in (1, 3, 1):  # a graph per batch size, replayed
            request = stage_request(stage, batch, batch)
            got, want = runner.run([request])[0], reference.run([request])[0]
            for name in got:
                scale = max(float(np.abs(want[name]).max()), 1e-6)
                tolerance = 2e-2 if runner.parameters.precision == "fp16" else 1e-4
                assert float(np.abs(got[name] - want[name]).max()) / scale < tolerance, (stage, name)


def served_avatar(url: str, avatar_id: str) -> AvatarFeatures:
    names = ["f_s", "motion_info", "eye_open", "eye_ball", "source_rgb", "crop_to_source", "shape_condition"]
    ident = grpcclient.InferInput("avatar_id", [1], "BYTES")
    ident.set_data_from_numpy(np.array([avatar_id.encode()], dtype=object))
    with grpcclient.InferenceServerClient(url) as c:
        out = c.infer("avatar_registry", [ident], outputs=[grpcclient.InferRequestedOutput(n) for n in names])
    return AvatarFeatures(**{n: out.as_numpy(n) for n in names})


def test_a_session_through_tritonserver_on_the_torch_flavor(repos, tiny_export, portrait, speech16k):
    torch_repo, _ = repos
    audio = speech16k[: 16000 * 2 + 321]
    with TritonServer(torch_repo) as server, DittoClient(server.grpc_url) as client:
        avatar = client.register_avatar(portrait, {"max_size": 512})
        frames = [f.rgb for f in client.stream(avatar, audio)]
        features = served_avatar(server.grpc_url, avatar)
    reference = [f.rgb for f in render_audio(OrtStages(tiny_export), features, audio, TINY.render_size)]
    assert len(frames) == -(-audio.size // 640)
    assert_same_pictures(frames, reference)  # PyTorch vs ONNX Runtime kernels: rounding only


def test_warp_runner_timing_measures_both_runners(tiny_export):
    from ditto_triton.benchmarks.warp_runners import measure

    runners = measure(tiny_export, (1, 2), budget_s=0.1, max_repeats=2)
    expected = {"torch cuda fp16", "torch cuda fp32"} if CUDA else {"torch cpu fp32"}
    assert expected <= set(runners) and any(name.startswith("onnxruntime ") for name in runners)
    for rows in runners.values():
        assert set(rows) == {1, 2}
        assert (
            rows[2]["ms_per_frame"] == pytest.approx(rows[2]["ms_per_call"] / 2, abs=0.01)
            and rows[1]["ms_per_call"] > 0
        )
