"""The model families; importing this package registers every one of them.

Adding a family: one module here that defines its classifier on :mod:`lrp_kernels.models.blocks`
and registers a :class:`~lrp_kernels.models.registry.Family`, plus its import below.
"""

from lrp_kernels.models.families import bert, roberta  # noqa: F401  (first: error messages list them first)
from lrp_kernels.models.families import deberta, eurobert, modernbert  # noqa: F401
