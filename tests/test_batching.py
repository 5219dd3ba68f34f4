"""The Triton-free batching helper and stage runtime: concatenation order, per-request errors,
reshapes, strict parameters, and a real tiny ONNX stage run through `StageRunner`."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf.json_format import MessageToDict

from ditto_triton.model_repository.batching import (
    RequestError,
    StageRunError,
    WireTensor,
    conform_request,
    run_requests,
)
from ditto_triton.model_repository.pbtxt import KIND_CPU
from ditto_triton.model_repository.render import stage_config
from ditto_triton.model_repository.stage_runtime import StageParameters, StageRunner
from ditto_triton.profiles import TINY
from ditto_triton.stages import stage_specs

X = WireTensor("x", np.float32, (-1, 2, 3), (-1, 2, 3))
T = WireTensor("t", np.int64, (-1, 1), (-1,))  # LMDM's time_cond: [B, 1] on the wire, [B] in the model
Y = WireTensor("y", np.float32, (-1, 2, 3), (-1, 2, 3))


def request(rows: int, start: float) -> dict[str, np.ndarray]:
    x = (start + np.arange(rows * 6, dtype=np.float32)).reshape(rows, 2, 3)
    return {"x": x, "t": np.arange(rows, dtype=np.int64).reshape(rows, 1)}


class Recorder:
    """A fake model: y = x + t (broadcast), recording every call's batch size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert arrays["t"].ndim == 1, "the model must see time_cond as [B]"
        self.batches.append(arrays["x"].shape[0])
        return {"y": arrays["x"] + arrays["t"][:, None, None]}


def test_requests_run_as_one_batch_in_order_and_split_back():
    requests = [request(1, 0), request(3, 100), request(2, 1000)]
    model = Recorder()
    results = run_requests(requests, [X, T], [Y], model, batched=True)
    assert model.batches == [6]
    for req, res in zip(requests, results):
        assert not isinstance(res, Exception)
        np.testing.assert_array_equal(res["y"], req["x"] + req["t"][:, :, None])


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"x": np.zeros((1, 2, 4), np.float32)}, ["'x'", "[-1, 2, 3]", "[1, 2, 4]"]),
        ({"x": np.zeros((1, 2, 3), np.float64)}, ["'x'", "float32", "float64"]),
        ({"x": None}, ["'x'", "missing"]),
        ({"t": np.zeros((2, 1), np.int64)}, ["'t'", "batch size 2", "1"]),
        ({"extra": np.zeros(1)}, ["extra"]),
    ],
)
def test_a_bad_request_gets_its_own_error_and_the_others_still_run(bad, words):
    good_a, good_b = request(2, 0), request(1, 50)
    broken = {**request(1, 10), **bad}
    model = Recorder()
    results = run_requests([good_a, broken, good_b], [X, T], [Y], model, batched=True)
    assert model.batches == [3]
    assert isinstance(results[1], RequestError)
    for word in words:
        assert word in str(results[1]), (word, str(results[1]))
    np.testing.assert_array_equal(results[0]["y"], good_a["x"] + good_a["t"][:, :, None])
    np.testing.assert_array_equal(results[2]["y"], good_b["x"] + good_b["t"][:, :, None])


def test_a_failing_model_fails_every_request_of_the_batch():
    def broken(arrays):
        raise RuntimeError("out of memory")

    results = run_requests([request(1, 0), request(1, 1)], [X, T], [Y], broken, batched=True)
    assert all(isinstance(r, StageRunError) and "out of memory" in str(r) for r in results)


def test_a_model_returning_the_wrong_batch_is_an_error():
    results = run_requests([request(2, 0)], [X, T], [Y], lambda a: {"y": a["x"][:1]}, batched=True)
    assert isinstance(results[0], StageRunError) and "'y'" in str(results[0])


def test_unbatched_requests_run_one_by_one():
    wave = WireTensor("wave", np.float32, (1, -1), (1, -1))
    feat = WireTensor("feat", np.float32, (-1, 4), (-1, 4))
    calls = []

    def model(arrays):
        calls.append(arrays["wave"].shape)
        if arrays["wave"].shape[1] < 8:
            raise ValueError("too short")
        return {"feat": np.ones((arrays["wave"].shape[1] // 8, 4), np.float32)}

    reqs = [{"wave": np.zeros(shape, np.float32)} for shape in ((1, 16), (1, 4), (2, 8))]
    results = run_requests(reqs, [wave], [feat], model, batched=False)
    assert calls == [(1, 16), (1, 4)]
    assert results[0]["feat"].shape == (2, 4)
    assert isinstance(results[1], StageRunError) and "too short" in str(results[1])
    assert isinstance(results[2], RequestError) and "[1, -1]" in str(results[2])


def test_conform_accepts_wire_or_model_shape_and_returns_model_shape():
    x = np.zeros((2, 2, 3), np.float32)
    for t in (np.zeros(2, np.int64), np.zeros((2, 1), np.int64)):
        arrays, batch = conform_request({"x": x, "t": t}, [X, T], batched=True)
        assert batch == 2 and arrays["t"].shape == (2,)


def test_stage_parameters_are_parsed_strictly():
    def cfg(**params):
        return {"parameters": {k: {"string_value": v} for k, v in params.items()}}

    assert StageParameters.from_config(cfg(ort_intra_op_threads="3", ort_allow_spinning="TRUE")) == StageParameters(
        intra_op_threads=3, allow_spinning=True
    )
    assert StageParameters.from_config(cfg(FORCE_CPU_ONLY_INPUT_TENSORS="no")) == StageParameters()
    assert StageParameters().flush_denormals  # this project's networks
    assert not StageParameters.from_config(cfg(ort_flush_denormals="false")).flush_denormals  # Ditto's face models
    for bad, word in [
        (cfg(ort_threads="2"), "unknown"),
        (cfg(ort_allow_spinning="yes"), "'true' or 'false'"),
        (cfg(ort_flush_denormals="1"), "'true' or 'false'"),
        (cfg(ort_intra_op_threads="two"), "integer"),
        (cfg(onnx_file="../x.onnx"), "inside the version directory"),
    ]:
        with pytest.raises(ValueError, match=word):
            StageParameters.from_config(bad)


@pytest.mark.parametrize("stage", ["stitch_network", "lmdm", "hubert"])
def test_stage_runner_serves_requests_like_onnxruntime(stage, tiny_export, tmp_path):
    spec = stage_specs(TINY)[stage]
    config = MessageToDict(
        stage_config(spec, "python-ort", kind=KIND_CPU, max_batch_size=8, ort_threads=1),
        preserving_proto_field_name=True,
    )  # proto3 JSON prints int64 dims as strings: the runner must cope, as with Triton's JSON
    (tmp_path / "model.onnx").symlink_to(tiny_export / spec.onnx_file)
    runner = StageRunner(config, tmp_path)
    rng = np.random.default_rng(0)
    feeds = []
    for batch in (1, 2):
        feed = {}
        for t in spec.inputs:
            shape = t.example_shape(batch=batch, dynamic_length=6480 if stage == "hubert" else None)
            feed[t.name] = np.full(shape, 250, np.int64) if t.dtype == "int64" else rng.random(shape, dtype=np.float32)
        feeds.append(feed)
    if not spec.batch_dynamic:
        feeds = feeds[:1]
    wire = [{k: v.reshape(-1, 1) if v.ndim == 1 else v for k, v in f.items()} for f in feeds]
    session = ort.InferenceSession(str(tiny_export / spec.onnx_file), providers=["CPUExecutionProvider"])
    for feed, result in zip(feeds, runner.run(wire)):
        assert not isinstance(result, Exception), result
        for name, want in zip(spec.output_names, session.run(spec.output_names, feed)):
            # Relative to the output's scale, as the export's parity: batch sizes change ORT's kernels.
            error = np.abs(result[name] - want).max() / max(np.abs(want).max(), 1e-6)
            assert result[name].shape == want.shape and error < 1e-5, (stage, name, error)


def test_stage_runner_refuses_an_onnx_file_that_is_not_the_configs(tiny_export, tmp_path):
    specs = stage_specs(TINY)
    config = MessageToDict(
        stage_config(specs["decoder"], "python-ort", kind=KIND_CPU, max_batch_size=4), preserving_proto_field_name=True
    )
    (tmp_path / "model.onnx").symlink_to(tiny_export / specs["stitch_network"].onnx_file)
    with pytest.raises(ValueError, match="does not match the config"):
        StageRunner(config, tmp_path)
