"""Helpers shared by the torch reference kernels."""

from __future__ import annotations

import torch


def acc(t: torch.Tensor) -> torch.Tensor:
    """Upcast to the accumulation dtype (float32, or float64 when given float64)."""
    return t if t.dtype == torch.float64 else t.float()
