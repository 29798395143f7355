"""Kernel backends: the contract (:mod:`.contract`), the registry and the choice per call (:mod:`.registry`).

``torch`` (the reference), ``cpp`` and ``cuda`` (the compiled kernels of ``csrc/``) and ``triton``,
each a package with one file per rule named as in ``lrp_kernels/ops/``. This layer imports nothing
above it (no ops, models, attribution or CLI).
"""

from lrp_kernels.backends.contract import (
    ACTIVATIONS,
    ATTENTION_MODES,
    GATED_ACTIVATIONS,
    ActivationKernels,
    AttentionKernels,
    Backend,
    GatedMLPKernels,
    LayerNormKernels,
    LinearKernels,
    RMSNormKernels,
)
from lrp_kernels.backends.registry import (
    BACKENDS,
    available_backends,
    get_backend,
    resolve,
    set_backend,
    unavailable_reason,
    use_backend,
)
from lrp_kernels.errors import BackendUnavailable

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_MODES",
    "BACKENDS",
    "ActivationKernels",
    "AttentionKernels",
    "Backend",
    "BackendUnavailable",
    "GATED_ACTIVATIONS",
    "GatedMLPKernels",
    "LayerNormKernels",
    "LinearKernels",
    "RMSNormKernels",
    "available_backends",
    "get_backend",
    "resolve",
    "set_backend",
    "unavailable_reason",
    "use_backend",
]
