"""``python -m lrp_kernels.cli`` (what ``torchrun … -m lrp_kernels.cli explain`` runs)."""

import sys

from lrp_kernels.cli import main

sys.exit(main())
