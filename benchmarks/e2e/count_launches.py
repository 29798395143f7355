"""Kernel launches per attribution: Triton launches (the launch hook) and the torch ops that launch a
kernel (every aten op except views, counted by a dispatch mode), on a 12-layer BERT. The count
depends on the layers, not the widths, so on a machine without a GPU it runs a tiny-width model
through Triton's interpreter (``TRITON_INTERPRET=1``) with the same host code as on a GPU.

    TRITON_INTERPRET=1 python benchmarks/e2e/count_launches.py            # no GPU
    python benchmarks/e2e/count_launches.py --device cuda                  # on a GPU, BERT-base widths

Host overhead is launches × the per-launch cost (Triton's launcher and ours: tens of µs; an aten
op: a few µs); tests/backends/test_triton_launch.py pins the Triton count.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from lrp_kernels.benchmarking import random_bert, random_inputs  # noqa: E402

_NO_KERNEL = ("view", "_unsafe_view", "transpose", "t", "permute", "expand", "slice", "select", "unsqueeze",
              "squeeze", "as_strided", "alias", "detach", "_reshape_alias", "split", "unbind", "lift_fresh",
              "_to_copy_view", "empty", "empty_like", "empty_strided", "reshape", "unflatten", "flatten")


class AtenOps(TorchDispatchMode):
    """Counts the aten ops that launch a kernel (views, empties and metadata ops excluded)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()
        self.paused = False  # inside a Triton launch (the interpreter copies tensors with torch ops)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in _NO_KERNEL and not self.paused:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count(model, ids, mask, method, backend) -> tuple[int, int]:
    from lrp_kernels import attribute
    from lrp_kernels.backends.triton._launch import Kernel, launch_hook

    triton_launches = []
    real_launch = Kernel.launch

    def launch(self, *args):
        aten.paused = True
        try:
            return real_launch(self, *args)
        finally:
            aten.paused = False

    Kernel.launch = launch
    try:
        with launch_hook(lambda launch: triton_launches.append(launch.kernel.name) or False), AtenOps() as aten:
            attribute(model, ids, mask, method=method, backend=backend)
    finally:
        Kernel.launch = real_launch
    return len(triton_launches), sum(aten.counts.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    tiny = args.device == "cpu"
    sizes = dict(hidden_size=32, num_attention_heads=2, intermediate_size=48) if tiny else {}
    dtype = torch.float32 if tiny else torch.bfloat16
    model = random_bert(dtype=dtype, device=args.device, **sizes)
    ids, mask, _ = random_inputs(model.config, 2 if tiny else 32, 16 if tiny else 128, device=args.device, padded=True)
    print(f"launches per attribution, BERT with {model.config.num_hidden_layers} layers "
          f"(hidden {model.config.hidden_size}), {args.device}")
    print(f"{'method':8s} {'backend':7s} {'triton':>7s} {'aten ops':>9s}")
    for method in ("attnlrp", "cp_lrp"):
        for backend in ("torch", "triton"):
            triton_n, aten_n = count(model, ids, mask, method, backend)
            print(f"{method:8s} {backend:7s} {triton_n:7d} {aten_n:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
