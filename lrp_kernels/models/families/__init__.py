"""The model families; importing this package registers every one of them.

Adding a family: one module here that defines its classifier on :mod:`lrp_kernels.models.blocks`
and registers a :class:`~lrp_kernels.models.registry.Family`, plus its import below.
"""

# in this order: the order of the supported model_types in error messages and the README
from lrp_kernels.models.families import bert, roberta, distilbert, electra, albert  # noqa: F401, I001
from lrp_kernels.models.families import modernbert, eurobert, deberta  # noqa: F401, I001
from lrp_kernels.models.families import llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, gpt2  # noqa: F401, I001
