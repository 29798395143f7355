"""End-to-end ``attnlrp`` attributions of a BERT-base-size random model on CUDA for the backends
triton / cuda / torch: time per batch, tokens per second and peak memory, at batch 32 and
sequences 128 and 512 in bfloat16 by default (larger than ``bench_e2e.py``'s 8 x 128, where the
fused Triton attention and GEMMs matter). A script, not a pytest module:

    python benchmarks/e2e/bench_gpu_e2e.py                  # batch 32, seq 128 and 512, bf16
    python benchmarks/e2e/bench_gpu_e2e.py --no-autotune    # first config per kernel: no autotuning compile time
    python benchmarks/e2e/bench_gpu_e2e.py --seqs 128 --batch 8 --dtype float16

Times are medians of CUDA events over ``--reps`` runs after a warm-up run that also autotunes.
Peak memory is ``torch.cuda.max_memory_allocated`` during one attribution, model weights included.
Benchmarks report and never fail: a backend that cannot run prints its reason in the table. Without
CUDA the script says so and exits 0. The kernels one by one: ``benchmarks/ops/bench_<rule>.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def e2e_rows(batch, seqs, dtype, reps, backends, config=None):
    """(seq, backend, ms per batch, tokens/s, peak GiB, speed-up vs torch) of ``attribute(attnlrp)``
    on a random model of ``config`` (BERT-base sizes by default)."""
    from lrp_kernels import attribute
    from lrp_kernels.backends import unavailable_reason
    from lrp_kernels.models import BertClassifier
    from lrp_kernels.models.config import ModelConfig

    torch.manual_seed(0)
    model = BertClassifier(config or ModelConfig()).eval().to(device="cuda", dtype=dtype)
    for seq in seqs:
        ids = torch.randint(1000, 30000, (batch, seq), device="cuda")
        mask = torch.ones_like(ids)
        lengths = torch.randint(seq // 2, seq + 1, (batch,), device="cuda")
        mask[torch.arange(seq, device="cuda")[None, :] >= lengths[:, None]] = 0  # ragged padding
        times = {}
        for name in backends:
            reason = unavailable_reason(name, "cuda")
            if reason is not None:
                yield [seq, name, f"unavailable: {reason[:70]}", "", "", ""]
                continue
            try:
                for _ in range(1):  # warm-up: compilation and autotuning
                    attribute(model, ids, mask, method="attnlrp", backend=name)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                attribute(model, ids, mask, method="attnlrp", backend=name)
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() / 2**30
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                samples = []
                for _ in range(reps):
                    start.record()
                    attribute(model, ids, mask, method="attnlrp", backend=name)
                    end.record()
                    torch.cuda.synchronize()
                    samples.append(start.elapsed_time(end))
                ms = sorted(samples)[len(samples) // 2]
                times[name] = ms
                yield [seq, name, ms, batch * seq / ms * 1e3, peak, None]
            except Exception as exc:  # report, never fail
                yield [seq, name, f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}", "", "", ""]
        if "torch" in times:
            for name, ms in times.items():
                yield [seq, f"{name} vs torch", "", "", "", times["torch"] / ms]


def _fmt(v, spec):
    if v is None or v == "":
        return ""
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seqs", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["triton", "cuda", "torch"])
    parser.add_argument("--no-autotune", action="store_true",
                        help="first config of each kernel, no autotuning (LRP_KERNELS_TRITON_AUTOTUNE=0): quicker start")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows survive a timeout that kills the script
    if args.no_autotune:
        os.environ["LRP_KERNELS_TRITON_AUTOTUNE"] = "0"

    if not torch.cuda.is_available():
        print("bench_gpu_e2e: no CUDA device, nothing to benchmark")
        return 0
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # the triton rows say it is unavailable
        triton_version = "not installed"
    dtype = DTYPES[args.dtype]
    print(f"device: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
          f"torch {torch.__version__}, triton {triton_version}, dtype {args.dtype}")
    t0 = time.time()
    print(f"\nend to end: attribute(method='attnlrp'), BERT-base (12 layers, hidden 768, 12 heads), "
          f"batch {args.batch}, ragged padding (median of {args.reps})")
    print(f"{'seq':>5s} {'backend':16s} {'ms/batch':>12s} {'tokens/s':>12s} {'peak GiB':>9s} {'speed-up':>9s}")
    for seq, name, ms, tps, peak, speedup in e2e_rows(args.batch, args.seqs, dtype, args.reps, args.backends):
        print(f"{seq:5d} {name:16s} {_fmt(ms, '12.2f'):>12s} {_fmt(tps, '12.0f'):>12s} {_fmt(peak, '9.2f'):>9s} "
              f"{_fmt(speedup, '8.2f') + ('x' if speedup else ''):>9s}")
        torch.cuda.empty_cache()
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
