"""Benchmark the Triton backend on CUDA: each kernel against the torch reference, then end-to-end
``attnlrp`` attributions of a BERT-base-size random model for the backends triton / cuda / torch.

    python benchmarks/bench_triton.py                  # end to end, then kernels (batch 32, seq 128 and 512, bf16)
    python benchmarks/bench_triton.py --skip-e2e       # kernels only
    python benchmarks/bench_triton.py --no-autotune    # first config per kernel: no autotuning compile time
    python benchmarks/bench_triton.py --seqs 128 --batch 8 --dtype float16

End to end comes first (it is the number that matters; gpu_check.sh gives this script 150 s and the
autotuner compiles every config on first use). Times are medians from ``triton.testing.do_bench``
(kernels) or CUDA events over ``--reps`` runs after a warm-up run that also autotunes (end to end). Peak memory is
``torch.cuda.max_memory_allocated`` during one attribution, model weights included. Benchmarks
report and never fail: a backend that cannot run prints its reason in the table. Without CUDA the
script says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _bench(fn, reps: int) -> float:
    """Median milliseconds of ``fn`` (L2 flushed between runs)."""
    import triton.testing

    return triton.testing.do_bench(fn, rep=reps * 10, return_mode="median")


def kernel_rows(batch, seq, dtype, reps, dev="cuda", hidden=768, heads=12, inter=3072):
    """(kernel, shape, torch ms, triton ms) for every host function (BERT-base sizes by default)."""
    import lrp_kernels.triton as tk
    from lrp_kernels.ops import _torch_backend as ref

    tokens = batch * seq
    gen = torch.Generator(device=dev).manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, device=dev, generator=gen) * scale).to(dtype)

    x, g_h = rand(batch, seq, hidden), rand(batch, seq, hidden)
    w_ln, b_ln = rand(hidden), rand(hidden)
    u, g_u = rand(batch, seq, inter, scale=2.0), rand(batch, seq, inter)
    w_out = rand(hidden, inter, scale=inter**-0.5)  # the MLP's output linear: [768, 3072]
    w_in = rand(inter, hidden, scale=hidden**-0.5)  # the MLP's input linear: [3072, 768]
    z_h = rand(batch, seq, hidden, scale=2.0)
    d = hidden // heads
    q, k, v, g_o = (rand(batch, heads, seq, d) for _ in range(4))
    mask = torch.zeros(batch, seq, device=dev)
    mask[batch // 2 :, seq - seq // 4 :] = torch.finfo(torch.float32).min  # half the batch padded by ¼
    scale = 1.0 / math.sqrt(d)
    _, rstd = ref.layer_norm_forward(x, w_ln, b_ln, 1e-12)[1:]
    _, ref_saved = ref.attention_forward(q, k, v, mask, scale, "attnlrp")
    _, tk_saved = tk.attention_forward(q, k, v, mask, scale, "attnlrp")
    _, ref_saved_cp = ref.attention_forward(q, k, v, mask, scale, "cp_lrp")
    _, tk_saved_cp = tk.attention_forward(q, k, v, mask, scale, "cp_lrp")

    cases = [
        ("layer_norm_forward", f"{tokens}x{hidden}",
         lambda: ref.layer_norm_forward(x, w_ln, b_ln, 1e-12), lambda: tk.layer_norm_forward(x, w_ln, b_ln, 1e-12)),
        ("layer_norm_backward", f"{tokens}x{hidden}",
         lambda: ref.layer_norm_backward(g_h, w_ln, rstd), lambda: tk.layer_norm_backward(g_h, w_ln, rstd)),
        ("gelu_forward", f"{tokens}x{inter}", lambda: ref.gelu_forward(u), lambda: tk.gelu_forward(u)),
        ("gelu_eps_ratio", f"{tokens}x{inter}",
         lambda: ref.gelu_eps_ratio(g_u, u, 1e-6), lambda: tk.gelu_eps_ratio(g_u, u, 1e-6)),
        ("eps_ratio", f"{tokens}x{hidden}", lambda: ref.eps_ratio(g_h, z_h, 1e-6), lambda: tk.eps_ratio(g_h, z_h, 1e-6)),
        ("linear_backward ε (out proj)", f"{tokens}x{hidden}·{hidden}x{hidden}",
         lambda: torch.matmul(ref.eps_ratio(g_h, z_h, 1e-6), w_in[:hidden]),
         lambda: tk.linear_backward(g_h, z_h, w_in[:hidden], 1e-6)),
        ("linear_backward ε (MLP out)", f"{tokens}x{hidden}·{hidden}x{inter}",
         lambda: torch.matmul(ref.eps_ratio(g_h, z_h, 1e-6), w_out),
         lambda: tk.linear_backward(g_h, z_h, w_out, 1e-6)),
        ("linear_backward GELU·ε (MLP in)", f"{tokens}x{inter}·{inter}x{hidden}",
         lambda: torch.matmul(ref.gelu_eps_ratio(g_u, u, 1e-6), w_in),
         lambda: tk.linear_backward(g_u, None, w_in, 1e-6, gelu_input=u)),
        ("attention_forward", f"{batch}x{heads}x{seq}x{d}",
         lambda: ref.attention_forward(q, k, v, mask, scale, "attnlrp"),
         lambda: tk.attention_forward(q, k, v, mask, scale, "attnlrp")),
        ("attention_backward attnlrp", f"{batch}x{heads}x{seq}x{d}",
         lambda: ref.attention_backward(g_o, q, k, v, mask, scale, "attnlrp", ref_saved),
         lambda: tk.attention_backward(g_o, q, k, v, mask, scale, "attnlrp", tk_saved)),
        ("attention_backward cp_lrp", f"{batch}x{heads}x{seq}x{d}",
         lambda: ref.attention_backward(g_o, q, k, v, mask, scale, "cp_lrp", ref_saved_cp),
         lambda: tk.attention_backward(g_o, q, k, v, mask, scale, "cp_lrp", tk_saved_cp)),
    ]
    for name, shape, torch_fn, triton_fn in cases:
        row = [name, shape]
        for fn in (torch_fn, triton_fn):
            try:
                row.append(_bench(fn, reps))
            except Exception as exc:  # report, never fail
                row.append(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
        yield row


def e2e_rows(batch, seqs, dtype, reps, backends, config=None):
    """(seq, backend, ms per batch, tokens/s, peak GiB, speed-up vs torch) of ``attribute(attnlrp)``
    on a random model of ``config`` (BERT-base sizes by default)."""
    from lrp_kernels import attribute
    from lrp_kernels.backend import unavailable_reason
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
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows survive a timeout that kills the script
    if args.no_autotune:
        os.environ["LRP_KERNELS_TRITON_AUTOTUNE"] = "0"

    if not torch.cuda.is_available():
        print("bench_triton: no CUDA device, nothing to benchmark (the Triton kernels run on GPUs; "
              "their CPU tests use the interpreter: pytest tests/test_triton_*.py)")
        return 0
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        print(f"bench_triton: triton is not installed ({exc}); nothing to benchmark")
        return 0
    dtype = DTYPES[args.dtype]
    print(f"device: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
          f"torch {torch.__version__}, triton {triton.__version__}, dtype {args.dtype}")
    t0 = time.time()
    if not args.skip_e2e:
        print(f"\nend to end: attribute(method='attnlrp'), BERT-base (12 layers, hidden 768, 12 heads), "
              f"batch {args.batch}, ragged padding (median of {args.reps})")
        print(f"{'seq':>5s} {'backend':16s} {'ms/batch':>12s} {'tokens/s':>12s} {'peak GiB':>9s} {'speed-up':>9s}")
        for seq, name, ms, tps, peak, speedup in e2e_rows(args.batch, args.seqs, dtype, args.reps, args.backends):
            print(f"{seq:5d} {name:16s} {_fmt(ms, '12.2f'):>12s} {_fmt(tps, '12.0f'):>12s} {_fmt(peak, '9.2f'):>9s} "
                  f"{_fmt(speedup, '8.2f') + ('x' if speedup else ''):>9s}")
            torch.cuda.empty_cache()
    if not args.skip_kernels:
        for seq in args.seqs:
            print(f"\nkernels, batch {args.batch}, seq {seq} (median ms; speed-up = torch / triton)")
            print(f"{'kernel':34s} {'shape':24s} {'torch':>10s} {'triton':>10s} {'speed-up':>9s}")
            for name, shape, t_ref, t_tk in kernel_rows(args.batch, seq, dtype, args.reps):
                both = isinstance(t_ref, float) and isinstance(t_tk, float)
                print(f"{name:34s} {shape:24s} {_fmt(t_ref, '10.3f'):>10s} {_fmt(t_tk, '10.3f'):>10s} "
                      f"{_fmt(t_ref / t_tk if both else '', '8.2f') + ('x' if both else ''):>9s}")
            torch.cuda.empty_cache()
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
