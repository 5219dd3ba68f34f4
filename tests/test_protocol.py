"""The wire contract is declared once (ditto_triton.protocol): the configs come from it, and every tensor
name the backends read or the client sends or reads is one of its tensors."""

from __future__ import annotations

import ast
from pathlib import Path

from ditto_triton import protocol
from ditto_triton.model_repository.pbtxt import mc
from ditto_triton.model_repository.service_configs import avatar_registry_config, orchestrator_config
from ditto_triton.profiles import TINY

ROOT = Path(__file__).resolve().parents[1]
TYPE_NAMES = {"BYTES": "TYPE_STRING"}


def string_args(path: Path, functions: set[str], position: int) -> set[str]:
    """String literals passed as argument `position` to calls of `functions` (by name or attribute)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or len(node.args) <= position:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        arg = node.args[position]
        if name in functions and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.add(arg.value)
    return found


def names(table) -> set[str]:
    return {t.name for t in table}


def test_the_service_configs_are_the_declared_tables():
    for config, inputs, outputs in (
        (orchestrator_config(TINY), protocol.ORCHESTRATOR_INPUTS, protocol.ORCHESTRATOR_OUTPUTS),
        (avatar_registry_config(TINY), protocol.AVATAR_REGISTRY_INPUTS, protocol.AVATAR_REGISTRY_OUTPUTS),
    ):
        declared_in = [(t.name, TYPE_NAMES.get(t.datatype, f"TYPE_{t.datatype}"), t.optional) for t in inputs]
        rendered_in = [(i.name, mc.DataType.Name(i.data_type), i.optional) for i in config.input]
        assert rendered_in == declared_in
        assert [o.name for o in config.output] == [t.name for t in outputs]
    controls = [c.name for c in orchestrator_config(TINY).sequence_batching.control_input]
    assert controls == list(protocol.ORCHESTRATOR_CONTROLS)


def test_the_backends_read_only_declared_inputs():
    readers = {"optional", "optional_text", "optional_bytes", "flag"}
    orchestrator = string_args(ROOT / "model_repository/backends/orchestrator.py", readers, 1)
    registry = string_args(ROOT / "model_repository/backends/avatar_registry.py", readers, 1)
    assert orchestrator and orchestrator <= names(protocol.ORCHESTRATOR_INPUTS) | set(protocol.ORCHESTRATOR_CONTROLS)
    assert registry and registry <= names(protocol.AVATAR_REGISTRY_INPUTS)
    assert set(protocol.START_ONLY_INPUTS) <= names(protocol.ORCHESTRATOR_INPUTS)


def test_the_client_sends_and_reads_only_declared_tensors():
    session = ROOT / "client/session.py"
    sent = string_args(session, {"_bytes_input", "InferInput"}, 0)
    read = string_args(session, {"as_numpy", "InferRequestedOutput"}, 0)
    every_input = names(protocol.ORCHESTRATOR_INPUTS) | names(protocol.AVATAR_REGISTRY_INPUTS)
    every_output = names(protocol.ORCHESTRATOR_OUTPUTS) | names(protocol.AVATAR_REGISTRY_OUTPUTS)
    assert sent and sent <= every_input, sent - every_input
    assert read and read <= every_output, read - every_output


def test_tensor_lookup_names_the_table_when_missing():
    assert protocol.tensor(protocol.ORCHESTRATOR_INPUTS, "audio").datatype == "FP32"
    try:
        protocol.tensor(protocol.ORCHESTRATOR_INPUTS, "video")
    except KeyError as err:
        assert "audio_int16" in str(err)
    else:
        raise AssertionError("an unknown tensor name was accepted")
