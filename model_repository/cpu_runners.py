"""Which runner serves each stage of the CPU flavor (python-ort): ONNX Runtime, or the PyTorch module where
PyTorch is faster on this CPU (the full warp network: its two 5-D GridSamples).

`ditto-serve --cpu-runners` takes `ort` (every stage on ONNX Runtime, the default), `auto` (the faster runner
per stage, from the timing `ditto-export --timing N` wrote into the manifest) or `STAGE=RUNNER,...`. PyTorch
serves a stage only when the export has its PyTorch weights; HuBERT stays on ONNX Runtime on the CPU (its
transformers module imports `ssl`, which the pip tritonserver's python stub cannot load).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CPU_RUNNERS = ("ort", "torch")
CHOICES = ("ort", "auto")
# PyTorch must beat ONNX Runtime by this fraction of ORT's time to serve a stage: within it the timings are
# noise, and ONNX Runtime keeps torch out of the stage's process.
MARGIN = 0.05
ORT_ONLY = ("hubert",)


def torch_capable(manifest: Mapping[str, Any], stage: str) -> bool:
    """Whether PyTorch can serve `stage` on the CPU: the export has its weights and it is not HuBERT."""
    entry = manifest["stages"].get(stage, {})
    return stage not in ORT_ONLY and entry.get("weights", {}).get("kind") in ("synthetic", "checkpoint")


def faster_cpu_runners(manifest: Mapping[str, Any], margin: float = MARGIN) -> dict[str, str]:
    """{stage: runner}: "torch" where the export's timing has PyTorch faster than ONNX Runtime by `margin`."""
    untimed = [name for name, e in manifest["stages"].items() if torch_capable(manifest, name) and not e.get("timing")]
    if untimed:
        raise ValueError(
            f"--cpu-runners auto needs the export's timing of {untimed}: export with `ditto-export --timing 5`"
        )
    runners = {}
    for name, entry in manifest["stages"].items():
        timing = entry.get("timing") or {}
        capable = torch_capable(manifest, name)
        runners[name] = faster_runner(timing["torch_ms"], timing["ort_ms"], margin) if capable else "ort"
    return runners


def faster_runner(torch_ms: float, ort_ms: float, margin: float = MARGIN) -> str:
    """ "torch" when PyTorch's time beats ONNX Runtime's by `margin` of it, else "ort"."""
    return "torch" if torch_ms < ort_ms * (1 - margin) else "ort"


def cpu_runners(spec: str | Mapping[str, str] | None, manifest: Mapping[str, Any]) -> dict[str, str]:
    """{stage: runner} for the python-ort flavor from `spec` ("ort", "auto", "STAGE=RUNNER,..." or a mapping)."""
    if spec is None or spec == "ort":
        return {name: "ort" for name in manifest["stages"]}
    if spec == "auto":
        return faster_cpu_runners(manifest)
    chosen = dict(spec) if isinstance(spec, Mapping) else _parse(spec)
    runners = {name: "ort" for name in manifest["stages"]}
    for stage, runner in chosen.items():
        if stage not in runners:
            raise ValueError(f"--cpu-runners: no stage {stage!r}; the export has {sorted(runners)}")
        if runner not in CPU_RUNNERS:
            raise ValueError(f"--cpu-runners: {stage} runs on one of {CPU_RUNNERS}, not {runner!r}")
        if runner == "torch" and not torch_capable(manifest, stage):
            raise ValueError(f"--cpu-runners: {stage} cannot run on PyTorch on the CPU (no PyTorch weights, or HuBERT)")
        runners[stage] = runner
    return runners


def _parse(text: str) -> dict[str, str]:
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    bad = [f"{a}{b}{c}" for a, b, c in pairs if not b or not a.strip() or not c.strip()]
    if bad or not pairs:
        raise ValueError(f"--cpu-runners takes {CHOICES[0]!r}, {CHOICES[1]!r} or STAGE=RUNNER[,...], not {text!r}")
    return {a.strip(): c.strip() for a, _, c in pairs}
