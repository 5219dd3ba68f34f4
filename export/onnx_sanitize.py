"""Polygraphy's sanitiser over an exported graph, before it is parity-checked, written and recorded.

It folds every constant subgraph (Polygraphy evaluates it with ONNX Runtime) into an initializer and
removes the nodes and tensors no output needs: what `polygraphy surgeon sanitize --fold-constants`
does. `Shape` nodes of runtime tensors are left alone (`fold_shapes=False`): folding them would
freeze the dynamic batch axis, or HuBERT's sample axis, at the traced size.
"""

from __future__ import annotations

from typing import Any

import onnx
import onnx_graphsurgeon
import polygraphy
from onnx_graphsurgeon.logger import G_LOGGER as GS_LOGGER
from polygraphy.backend.onnx import fold_constants
from polygraphy.logger import G_LOGGER

SANITIZER = "polygraphy"


def sanitizer_versions() -> dict[str, str]:
    """Library versions of the sanitiser, for the manifest's `versions`."""
    return {"polygraphy": polygraphy.__version__, "onnx_graphsurgeon": onnx_graphsurgeon.__version__}


def fold_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model with the constant subgraphs of `model` folded and unused nodes removed. `model` is
    consumed: it is not copied first (HuBERT-Large's weights would be held three times)."""
    # Only errors: GraphSurgeon warns about folded tensors over 1 MiB, which here are transposed
    # weights that replace the originals rather than add to them.
    with G_LOGGER.verbosity(G_LOGGER.ERROR), GS_LOGGER.suppress(GS_LOGGER.ERROR):
        # error_ok=False: a graph Polygraphy cannot fold stops the export instead of being written
        # unsanitised under a manifest that says it was sanitised.
        return fold_constants(model, fold_shapes=False, error_ok=False, copy=False)


def sanitize_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The sanitised model and the manifest record of what was done to it; `model` is consumed."""
    nodes_before = len(model.graph.node)
    folded = fold_model(model)
    record = {
        "tool": SANITIZER,
        "version": polygraphy.__version__,
        "fold_constants": True,
        "fold_shapes": False,
        "nodes_before": nodes_before,
        "nodes_after": len(folded.graph.node),
    }
    return folded, record
