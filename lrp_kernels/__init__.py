"""lrp-kernels: Layer-wise Relevance Propagation for BERT-family text classifiers in one backward pass.

>>> import lrp_kernels
>>> explainer = lrp_kernels.Explainer.from_pretrained("path/to/checkpoint", method="attnlrp")
>>> explainer.explain(["a gorgeous, witty film"])[0].tokens
"""

from lrp_kernels.attribution import LRP_METHODS, METHODS, Attribution, attribute
from lrp_kernels.backend import available_backends, get_backend, set_backend, use_backend
from lrp_kernels.explainer import Explainer, Explanation
from lrp_kernels.errors import CheckpointError, InputError, LRPKernelsError
from lrp_kernels.models import BertClassifier, from_hf, load_pretrained

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "BertClassifier",
    "CheckpointError",
    "Explainer",
    "Explanation",
    "InputError",
    "LRPKernelsError",
    "LRP_METHODS",
    "METHODS",
    "attribute",
    "available_backends",
    "from_hf",
    "get_backend",
    "load_pretrained",
    "set_backend",
    "use_backend",
]
