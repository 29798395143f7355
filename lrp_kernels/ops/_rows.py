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

#: gather the live rows only when at most this share of the rows is live (a gather and a scatter cost
#: a few passes over memory; a contiguous run of live rows costs none: it is taken as a view)
GATHER_SHARE = 0.9


def live_rows(grad: torch.Tensor) -> slice | torch.Tensor | None:
    """The rows of ``grad`` [..., n] (flattened over the leading dims) holding a nonzero value: a
    ``slice`` when they are one contiguous run (a causal model's rows up to a target, a read-out row),
    else their indices — or None when every row is live, when scattered live rows are too many to pay
    for the gather (:data:`GATHER_SHARE`), or when ``grad`` is a CUDA tensor (the check would
    synchronize with the device)."""
    if grad.device.type != "cpu" or grad.dim() < 2:
        return None
    flat = grad.reshape(-1, grad.shape[-1])
    # max |g| per row: one vectorised reduction (several times faster on the CPU than ne(0).any(), which
    # writes a bool tensor first); NaN stays live (NaN ≠ 0), so a NaN is propagated, never zeroed
    live = flat.abs().amax(dim=-1).ne(0)
    if bool(live.all()):
        return None
    rows = live.nonzero()[:, 0]
    if rows.numel() == 0:
        return slice(0, 0)
    first, last = int(rows[0]), int(rows[-1])
    if last - first + 1 == rows.numel():
        return slice(first, last + 1)
    return None if rows.numel() > GATHER_SHARE * flat.shape[0] else rows


def rowwise(grad: torch.Tensor, saved: tuple, width: int, backward: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``backward(grad, *saved)`` -> [..., width], computed on the live rows of ``grad`` only when that pays
    (``saved``: tensors shaped as ``grad`` in their leading dims, or None, taken row by row alike)."""
    rows = live_rows(grad)
    if rows is None:
        return backward(grad, *saved)
    flat = grad.reshape(-1, grad.shape[-1])
    take = [None if t is None else t.reshape(-1, t.shape[-1])[rows] for t in saved]
    if isinstance(rows, slice):  # one run of live rows: views in, one copy out, the rest zeroed
        out = grad.new_empty(*grad.shape[:-1], width)
        view = out.view(-1, width)
        if rows.stop > rows.start:
            view[rows] = backward(flat[rows], *take)
        view[: rows.start].zero_()
        view[rows.stop :].zero_()
        return out
    out = grad.new_zeros(*grad.shape[:-1], width)
    out.view(-1, width).index_copy_(0, rows, backward(flat[rows], *take).to(out.dtype))
    return out
