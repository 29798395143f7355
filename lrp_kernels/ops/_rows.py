"""Backward GEMMs that skip the rows of a gradient that are all zero (CPU).

A causal language model explained at a few positions sends gradients with few nonzero rows through
its last layer (after the last attention only the explained positions have any) and, in every layer,
zero rows after the last explained position (causal attention: no later token reaches it). The
backward of a linear map, g_x = s·W with s the rule applied to g row by row, is row-wise: a zero row of g
gives a zero row of g_x exactly (0·w = 0 for finite weights), so computing the live rows alone changes
nothing but the time. On CUDA the check would synchronize with the device, so only CPU tensors skip.
"""

from __future__ import annotations

from typing import Callable

import torch

def live_rows(grad: torch.Tensor) -> torch.Tensor | None:
    """The indices of the rows of ``grad`` [..., n] (flattened over the leading dims) holding a nonzero
    value, or None when every row does (or ``grad`` is a CUDA tensor). Gathering the live rows and
    scattering the result costs a few passes over memory, against a GEMM of n·width multiply-adds per
    row: any dead row pays for it (padding rows of a classifier's batch are dead too)."""
    if grad.device.type != "cpu" or grad.dim() < 2:
        return None
    flat = grad.reshape(-1, grad.shape[-1])
    live = flat.ne(0).any(dim=-1)
    if bool(live.all()):
        return None
    return live.nonzero()[:, 0]


def rowwise(grad: torch.Tensor, saved: tuple, width: int, backward: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``backward(grad, *saved)`` -> [..., width], computed on the live rows of ``grad`` only when that pays
    (``saved``: tensors shaped as ``grad`` in their leading dims, or None, taken row by row alike)."""
    rows = live_rows(grad)
    if rows is None:
        return backward(grad, *saved)
    take = [None if t is None else t.reshape(-1, t.shape[-1])[rows] for t in saved]
    out = grad.new_zeros(*grad.shape[:-1], width)
    out.view(-1, width).index_copy_(0, rows, backward(grad.reshape(-1, grad.shape[-1])[rows], *take).to(out.dtype))
    return out
