"""Rule sets: which backward rule every op of the model uses for a given attribution method.

=============  ===========  ==============  ============  ============
rule set       linear       LayerNorm       GELU / tanh   attention
=============  ===========  ==============  ============  ============
``gradient``   gradient     gradient        gradient      gradient
``lrp_epsilon``ε-rule       gradient        gradient      gradient
``attnlrp``    ε-rule       identity on σ   identity      ``attnlrp``
``cp_lrp``     ε-rule       identity on σ   identity      ``cp_lrp``
=============  ===========  ==============  ============  ============

``lrp_epsilon`` is the naive baseline: the ε-rule on linear layers and the plain gradient elsewhere.
References: Bach et al. 2015 (ε-rule); Ali et al. 2022 (CP-LRP); Achtibat et al. 2024 (AttnLRP).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rules:
    """The backward rule of each op kind. ``linear_eps=None`` means the plain gradient."""

    name: str
    linear_eps: float | None
    layer_norm: str  # "identity" | "grad"
    activation: str  # "identity" | "grad"
    attention: str  # "grad" | "attnlrp" | "cp_lrp"

    @property
    def is_plain(self) -> bool:
        return (
            self.linear_eps is None
            and self.layer_norm == "grad"
            and self.activation == "grad"
            and self.attention == "grad"
        )


GRADIENT = Rules("gradient", None, "grad", "grad", "grad")


def lrp_rules(name: str, eps: float = 1e-6) -> Rules:
    """The rule set ``name`` (``lrp_epsilon``, ``attnlrp`` or ``cp_lrp``) with stabilizer ``eps``."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if name == "lrp_epsilon":
        return Rules(name, eps, "grad", "grad", "grad")
    if name in ("attnlrp", "cp_lrp"):
        return Rules(name, eps, "identity", "identity", name)
    raise ValueError(f"unknown rule set {name!r}; valid: lrp_epsilon, attnlrp, cp_lrp")
