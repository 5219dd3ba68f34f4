"""A real tritonserver serving the python-ort stages of the tiny export: parity with in-process
ONNX Runtime, dynamic batching, the render_chain ensemble, per-request errors, clean shutdown."""

from __future__ import annotations

import os
import queue
import shutil
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from triton_inputs import SPECS, infer, infer_inputs, seeded_inputs, to_wire
from tritonclient.utils import InferenceServerException

from ditto_triton.model_repository import pbtxt
from ditto_triton.profiles import TINY
from ditto_triton.stages import STAGE_ORDER, StageSpec

PARITY_ATOL = 1e-6
# Batched vs solo runs may pick other kernels (ORT reductions); observed <= 4e-7 on the tiny warp.
BATCH_ATOL = 1e-5


def local_session(repo, spec: StageSpec) -> ort.InferenceSession:
    """ORT in this process on the repository's model file, with the config's thread count."""
    params = pbtxt.get_parameters(pbtxt.read_config(repo / spec.name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(params["ort_intra_op_threads"])
    return ort.InferenceSession(str(repo / spec.name / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def client(triton_stage_server):
    with grpcclient.InferenceServerClient(triton_stage_server.grpc_url) as c:
        yield c


def test_server_serves_every_stage_and_ensemble(client):
    ready = {m.name for m in client.get_model_repository_index().models if m.state == "READY"}
    assert ready == set(STAGE_ORDER) | {"render_chain", "extractors"}


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_matches_in_process_onnxruntime(stage, client, triton_stage_server):
    spec = SPECS[stage]
    arrays = seeded_inputs(spec, batch=1, seed=STAGE_ORDER.index(stage))
    got = infer(client, stage, to_wire(spec, arrays), spec.output_names)
    session = local_session(triton_stage_server.model_repository, spec)
    want = dict(zip(spec.output_names, session.run(spec.output_names, arrays)))
    for name in spec.output_names:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=PARITY_ATOL, err_msg=f"{stage}.{name}")


def _stats(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


@pytest.mark.parametrize("stage", ["warp_network", "decoder"])
def test_concurrent_requests_are_batched_and_unchanged(stage, client):
    spec = SPECS[stage]
    n = 16
    requests = [seeded_inputs(spec, batch=1, seed=100 + i) for i in range(n)]
    solo = [infer(client, stage, r, spec.output_names) for r in requests]

    inferences_before, executions_before = _stats(client, stage)
    done: queue.Queue = queue.Queue()
    for i, r in enumerate(requests):
        client.async_infer(
            stage, infer_inputs(r), callback=lambda result, error, i=i: done.put((i, result, error)), request_id=str(i)
        )
    results = {}
    for _ in range(n):
        i, result, error = done.get(timeout=60)
        assert error is None, error
        results[i] = {name: result.as_numpy(name) for name in spec.output_names}
    # Triton updates the statistics just after it sends a response: wait for the last ones.
    deadline = time.monotonic() + 10
    while (stats := _stats(client, stage))[0] - inferences_before < n and time.monotonic() < deadline:
        time.sleep(0.05)
    inferences, executions = stats

    assert inferences - inferences_before == n
    assert executions - executions_before < n, "no request was batched with another"
    for i in range(n):
        for name in spec.output_names:
            np.testing.assert_allclose(results[i][name], solo[i][name], rtol=0, atol=BATCH_ATOL, err_msg=f"request {i}")


def test_render_chain_equals_the_three_stages(client):
    stitch, warp, decoder = SPECS["stitch_network"], SPECS["warp_network"], SPECS["decoder"]
    arrays = seeded_inputs(warp, batch=2, seed=7)
    chain = infer(client, "render_chain", arrays, ["output"])["output"]

    stitched = infer(client, stitch.name, {k: arrays[k] for k in stitch.input_names}, ["out"])["out"]
    warped = infer(client, warp.name, {**arrays, "kp_driving": stitched}, ["out"])["out"]
    manual = infer(client, decoder.name, {"feature": warped}, ["output"])["output"]
    assert chain.shape == (2, 3, TINY.render_size, TINY.render_size)
    np.testing.assert_allclose(chain, manual, rtol=0, atol=PARITY_ATOL)
    assert not np.allclose(stitched, arrays["kp_driving"]), "stitching should move the driving keypoints"


def test_extractors_ensemble_equals_the_two_stages(client):
    image = seeded_inputs(SPECS["appearance_extractor"], batch=1, seed=3)
    names = ["pred", *SPECS["motion_extractor"].output_names]
    both = infer(client, "extractors", image, names)
    assert np.array_equal(both["pred"], infer(client, "appearance_extractor", image, ["pred"])["pred"])
    motion = infer(client, "motion_extractor", image, SPECS["motion_extractor"].output_names)
    for name, array in motion.items():
        assert np.array_equal(both[name], array), name


def test_wrong_shape_gets_a_clear_error_and_the_server_stays_ready(client):
    bad = {"image": np.zeros((1, 3, 32, 32), np.float32)}
    with pytest.raises(InferenceServerException) as err:
        infer(client, "appearance_extractor", bad, ["pred"])
    message = str(err.value)
    assert "image" in message and "64" in message and "32" in message, message
    assert client.is_server_ready()
    good = seeded_inputs(SPECS["appearance_extractor"], batch=1, seed=0)
    assert infer(client, "appearance_extractor", good, ["pred"])["pred"].shape[0] == 1


def test_model_failure_is_that_requests_error(client):
    # Shape-valid for the config (dims [1, -1]) but too short for HuBERT's convolutions: the stage
    # model itself must answer with an error naming the stage, and keep serving.
    with pytest.raises(InferenceServerException, match="hubert"):
        infer(client, "hubert", {"input_values": np.zeros((1, 8), np.float32)}, ["encoding_out"])
    spec = SPECS["hubert"]
    ok = infer(client, "hubert", seeded_inputs(spec, 1, 0), ["encoding_out"])["encoding_out"]
    assert ok.shape == (TINY.hubert.window_frames, TINY.hubert.hidden_size)


def test_server_stops_cleanly(triton_server_factory, tiny_export, tmp_path):
    from ditto_triton.model_repository.render import render_repository

    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=False)
    for model in (*STAGE_ORDER, "render_chain", "extractors"):  # a one-model repository starts fastest
        if model != "stitch_network":
            shutil.rmtree(repo / model)
    server = triton_server_factory(repo)
    pid = server.pid
    assert server.is_ready()
    assert server.stop() == 0
    assert not server.is_ready()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# A stand-in for the service backends: answers every request with zeros shaped like the config's
# outputs (-1 -> 2), twice then a final flag when decoupled; records what the controls carried.
_DUMMY_SERVICE = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(self.config)

    def _outputs(self, request):
        lead = [1] if int(self.config["max_batch_size"]) > 0 else []
        tensors = []
        for out in self.config["output"]:
            shape = lead + [2 if int(d) < 0 else int(d) for d in out["dims"]]
            dtype = pb_utils.triton_string_to_numpy(out["data_type"])
            tensors.append(pb_utils.Tensor(out["name"], np.zeros(shape, dtype)))
        corrid = pb_utils.get_input_tensor_by_name(request, "CORRID")
        if corrid is not None:
            pb_utils.Logger.log_info(f"dummy corrid {corrid.as_numpy().tolist()} {corrid.as_numpy().dtype}")
        return tensors

    def execute(self, requests):
        pb_utils.Logger.log_info(f"dummy execute {len(requests)}")
        if not self.decoupled:
            return [pb_utils.InferenceResponse(output_tensors=self._outputs(r)) for r in requests]
        for request in requests:
            sender = request.get_response_sender()
            for _ in range(2):
                sender.send(pb_utils.InferenceResponse(output_tensors=self._outputs(request)))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def test_service_configs_load_in_triton(triton_server_factory, tiny_export, tmp_path):
    """The orchestrator contract (decoupled, sequence batching `oldest`, max_batch_size > 0, optional
    inputs, bool START/END, uint64 CORRID) and the avatar registry's are accepted by this Triton."""
    from ditto_triton.model_repository.render import render_repository

    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True, max_sessions=4)
    for model in (*STAGE_ORDER, "render_chain", "extractors"):
        shutil.rmtree(repo / model)
    for model in ("avatar_registry", "orchestrator"):
        (repo / model / "1" / "model.py").write_text(_DUMMY_SERVICE)
    server = triton_server_factory(repo)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        registered = c.infer("avatar_registry", infer_inputs({"avatar_id": np.array([b"abc"], object)}))
        assert registered.as_numpy("f_s").shape == (
            2,
            *TINY.appearance.feature_shape,
        )  # the dummy fills -1 (source frames) with 2

        responses: queue.Queue = queue.Queue()
        c.start_stream(callback=lambda result, error: responses.put((result, error)))
        chunk = {"audio": np.zeros((1, 640), np.float32), "sample_rate": np.array([[16000]], np.int32)}
        first = {"audio_int16": np.zeros((1, 320), np.int16), "avatar_id": np.array([[b"abc"]], object)}
        for seq, start, end, arrays in [
            (11, True, False, first),
            (12, True, False, chunk),
            (11, False, True, chunk),
            (12, False, True, first),
        ]:
            c.async_stream_infer(
                "orchestrator",
                infer_inputs(arrays),
                sequence_id=seq,
                sequence_start=start,
                sequence_end=end,
                enable_empty_final_response=True,
            )
        frames = finals = 0
        while finals < 4:
            result, error = responses.get(timeout=30)
            assert error is None, error
            if result.get_response().parameters["triton_final_response"].bool_param:
                finals += 1
            else:
                frames += 1
                assert result.as_numpy("frame").dtype == np.uint8
        c.stop_stream()
    assert frames == 8
    log = server.log_path.read_text()
    assert "dummy corrid [[11]] uint64" in log and "dummy corrid [[12]] uint64" in log


def test_a_server_that_dies_at_startup_raises_with_its_log(tiny_export, tmp_path):
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer, TritonServerError

    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=False)
    for model in (*STAGE_ORDER, "render_chain", "extractors"):
        if model != "stitch_network":
            shutil.rmtree(repo / model)
    (repo / "stitch_network" / "1" / "model.onnx").unlink()
    server = TritonServer(repo, startup_timeout_s=60)
    with pytest.raises(TritonServerError, match="exited with code") as err:
        server.start()
    assert "stitch_network" in str(err.value) and "model.onnx" in str(err.value)
    assert server.pid is None


def test_a_missing_pytriton_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    from ditto_triton.model_repository import server

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(server.TritonServerError, match="make setup"):
        server.find_tritonserver()
