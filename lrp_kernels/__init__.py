"""lrp-kernels: Layer-wise Relevance Propagation for transformer text classifiers in one backward pass.

>>> import lrp_kernels
>>> explainer = lrp_kernels.Explainer.from_pretrained("path/to/checkpoint", method="attnlrp")
>>> explainer.explain(["a gorgeous, witty film"])[0].tokens

The public names below are imported on first use, so that importing a low layer
(``lrp_kernels.backends``, ``lrp_kernels.ops``, the compiled ``lrp_kernels._C``) does not pull in
the models, the attribution methods or ``transformers``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Attribution": "lrp_kernels.attribution",
    "attribute": "lrp_kernels.attribution",
    "LRP_METHODS": "lrp_kernels.methods",
    "METHODS": "lrp_kernels.methods",
    "available_backends": "lrp_kernels.backends",
    "get_backend": "lrp_kernels.backends",
    "set_backend": "lrp_kernels.backends",
    "use_backend": "lrp_kernels.backends",
    "Explainer": "lrp_kernels.explainer",
    "Explanation": "lrp_kernels.explainer",
    "Explanations": "lrp_kernels.explainer",
    "LayerRelevance": "lrp_kernels.layer_relevance",
    "BackendError": "lrp_kernels.errors",
    "BackendUnavailable": "lrp_kernels.errors",
    "CheckpointError": "lrp_kernels.errors",
    "InputError": "lrp_kernels.errors",
    "LRPKernelsError": "lrp_kernels.errors",
    "BertClassifier": "lrp_kernels.models",
    "EncoderClassifier": "lrp_kernels.models",
    "SUPPORTED_MODEL_TYPES": "lrp_kernels.models",
    "from_hf": "lrp_kernels.models",
    "load_pretrained": "lrp_kernels.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lrp_kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
