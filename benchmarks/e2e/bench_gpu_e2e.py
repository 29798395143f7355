"""The GPU decision: is the Triton backend ≥ 1.5× torch (SDPA) end to end, and does it agree?

A script in three sections, each printing a short table (``benchmarks/gpu_check.sh`` runs them in
this order, each under its own time limit):

    python benchmarks/e2e/bench_gpu_e2e.py e2e      # attnlrp and cp_lrp on a BERT-base-size random
                                                    # model, batch 32 × seq 128 and 512, bf16, ragged,
                                                    # and on a decoder (Llama-3.2-1B widths, 4 layers,
                                                    # batch 8 × 512, left-padded: causal attention,
                                                    # grouped K/V, rotary) where the tree has the
                                                    # llama family: first call and steady state,
                                                    # triton vs torch (SDPA), the scores' agreement,
                                                    # and the verdict over every row
    python benchmarks/e2e/bench_gpu_e2e.py kernels  # the rules alone: linear rule + torch.matmul vs
                                                    # torch's rule + matmul vs the bare matmul;
                                                    # attention vs SDPA × (¼, ¼, ½); causal attention
                                                    # (4 query heads per K/V head) vs SDPA is_causal
                                                    # and, left-padded, vs the torch backend (SDPA with
                                                    # a dense mask); LayerNorm, GELU, RMSNorm, the gated
                                                    # MLP (SwiGLU) backward
    python benchmarks/e2e/bench_gpu_e2e.py edge     # head dim 256, B·H > 65,535, a fully padded
                                                    # sequence at L = 512: Triton vs the reference

``--tiny --device cpu`` runs the same code at toy sizes through Triton's interpreter (set
``TRITON_INTERPRET=1``): the CPU-side check of this script (tests/test_gpu_check.py). First-call
times include Triton's compilation and tuning (``LRP_KERNELS_TRITON_AUTOTUNE``, default 1, tuning
file ``LRP_KERNELS_TRITON_TUNING_FILE``). Steady-state times are medians of ``--reps`` runs
(interleaved round-robin across backends). Scores: Pearson correlation and the largest difference
relative to the largest |score| of the row, per example, worst example reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from lrp_kernels.benchmarking import random_bert, random_inputs, time_interleaved  # noqa: E402

VERDICT_SPEEDUP = 1.5
#: agreement needed for the verdict: bf16 scores of two summation orders
MIN_CORRELATION, MAX_RELATIVE = 0.99, 0.1
FULL = dict(batch=32, seqs=(128, 512), sizes={}, reps=10)
TINY = dict(batch=2, seqs=(8,), sizes=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=48, max_position_embeddings=32), reps=1)
#: the decoder row: Llama-3.2-1B's widths (head dim 64, 4 query heads per K/V head), 4 layers
DECODER = dict(model_type="llama", hidden_size=2048, num_hidden_layers=4, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=8192, vocab_size=128256, max_position_embeddings=4096,
               rms_norm_eps=1e-5, rope_theta=500000.0, pad_token_id=0, initializer_range=0.02)
DECODER_FULL = dict(batch=8, seqs=(512,), reps=5)
DECODER_TINY = dict(batch=2, seqs=(8,), reps=1, sizes=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                           num_key_value_heads=2, intermediate_size=96,
                                                           vocab_size=64, max_position_embeddings=32))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_call(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _agrees(triton, torch_) -> bool:
    """Triton's bfloat16 scores agree with the float32 reference about as well as torch's do."""
    return triton[0] >= min(MIN_CORRELATION, torch_[0] - 0.01) and triton[1] <= max(MAX_RELATIVE, 2 * torch_[1])


def agreement(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(worst Pearson correlation, worst max |difference| / max |want|) over the examples."""
    corr, rel = 1.0, 0.0
    for a, b in zip(got.double(), want.double()):
        a, b = a[b != 0], b[b != 0]
        if a.numel() > 1 and a.std() > 0 and b.std() > 0:
            corr = min(corr, float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
        rel = max(rel, float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)))
    return corr, rel


# ----------------------------------------------------------------------------------- end to end
def _rows(label, model, reference, inputs, shape, device, speedups) -> bool:
    """Time attnlrp and cp_lrp on triton and torch for each (seq, ids, mask, types) of ``inputs``, print
    a row per backend, append Triton's speed-ups; whether Triton's scores agree (``_agrees``)."""
    from lrp_kernels import attribute

    agreed = True
    for seq, ids, mask, types in inputs:
        for method in ("attnlrp", "cp_lrp"):
            calls = {b: (lambda b=b: attribute(model, ids, mask, types, method=method, backend=b))
                     for b in ("torch", "triton")}
            first = {b: _first_call(fn, device) for b, fn in calls.items()}
            timings = time_interleaved(calls, device, repeat=shape["reps"], warmup=1)
            exact = attribute(reference, ids, mask, types, method=method, backend="torch").scores
            scores = {b: agreement(fn().scores, exact) for b, fn in calls.items()}
            speedups.append(timings["torch"].median / timings["triton"].median)
            agreed &= _agrees(scores["triton"], scores["torch"])
            for b in calls:
                ms = timings[b].median * 1e3
                gain = f"{speedups[-1]:7.2f}x" if b == "triton" else f"{'':8s}"
                print(f"{label:8s} {method:8s} {seq:4d} {b:7s} {first[b]:8.2f} {ms:9.2f} "
                      f"{shape['batch'] * seq / ms * 1e3:9.0f} {gain} {scores[b][0]:7.4f} {scores[b][1]:7.4f}", flush=True)
    return agreed


def _decoder(args):
    """``(model, float32 model, shape)`` of the decoder row, or None where the tree has no llama family."""
    from lrp_kernels.benchmarking import random_model
    from lrp_kernels.models import config_from_dict, supported_model_types

    if "llama" not in supported_model_types():
        return None
    shape = DECODER_TINY if args.tiny else DECODER_FULL
    config = config_from_dict({**DECODER, **shape.get("sizes", {})}, num_labels=2, source="bench_gpu_e2e decoder")
    return (random_model(config, dtype=getattr(torch, args.dtype), device=args.device),
            random_model(config, dtype=torch.float32, device=args.device), shape)


def _left_padded(config, batch, seq, device):
    """``random_inputs``' ragged rows moved to the right end (decoders pad on the left); no token types."""
    ids, mask, _ = random_inputs(config, batch, seq, device=device, padded=True)
    shift = (mask == 0).sum(dim=1)
    index = (torch.arange(seq, device=device)[None, :] - shift[:, None]) % seq
    return ids.gather(1, index), mask.gather(1, index), None


def e2e(args) -> int:
    device, dtype, shape = torch.device(args.device), getattr(torch, args.dtype), TINY if args.tiny else FULL
    model = random_bert(dtype=dtype, device=device, **shape["sizes"])
    print(f"end to end: attribute() on a random BERT ({model.config.num_hidden_layers} layers, hidden "
          f"{model.config.hidden_size}), batch {shape['batch']}, ragged, {args.dtype}, median of {shape['reps']}")
    print(f"{'model':8s} {'method':8s} {'L':>4s} {'backend':7s} {'first s':>8s} {'ms':>9s} {'tok/s':>9s} "
          f"{'speed-up':>8s} {'corr':>7s} {'rel':>7s}   (corr, rel: against float32 torch)")
    reference = random_bert(dtype=torch.float32, device=device, **shape["sizes"])  # same weights, float32
    inputs = [(seq, *random_inputs(model.config, shape["batch"], seq, device=device, padded=True))
              for seq in shape["seqs"]]
    speedups = []
    agreed = _rows("bert", model, reference, inputs, shape, device, speedups)
    del model, reference
    decoder = _decoder(args)
    if decoder is None:
        print("decoder  (no row: this tree has no llama family)")
    else:
        model, reference, dshape = decoder
        c = model.config
        print(f"decoder: a random llama classifier ({c.num_hidden_layers} layers, hidden {c.hidden_size}), batch "
              f"{dshape['batch']}, left-padded, causal attention, median of {dshape['reps']}")
        inputs = [(seq, *_left_padded(c, dshape["batch"], seq, device)) for seq in dshape["seqs"]]
        agreed &= _rows("llama", model, reference, inputs, dshape, device, speedups)
    verdict = "yes" if min(speedups) >= VERDICT_SPEEDUP and agreed else "no"
    print(f"\nslowest Triton speed-up {min(speedups):.2f}x, scores agree: {'yes' if agreed else 'NO'}")
    print(f"VERDICT Triton >= {VERDICT_SPEEDUP}x torch(SDPA) end to end: {verdict}")
    return 0


# ---------------------------------------------------------------------------------- kernel rows
def _bench(fn, device, reps) -> float:
    """Median milliseconds of ``fn`` (CUDA: triton.testing.do_bench; CPU: wall time)."""
    if device.type == "cuda":
        import triton

        return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
    return time_interleaved({"f": fn}, device, repeat=reps, warmup=1)["f"].median * 1e3


def _linear_rows(t, torch_b, triton_b):
    """(name, triton fn, torch fn) of the linear rule then the GEMM, and the bare GEMM as the floor."""
    def rule_then_gemm(backend, g, z, w, gelu):
        kernels = backend.linear
        s = kernels.gelu_eps_ratio(g, z, 1e-6, "none") if gelu else kernels.eps_ratio(g, z, 1e-6)
        return torch.matmul(s, w)

    rows = []
    for name, g, z, w, gelu in (("linear eps + matmul (MLP out)", t.g_h, t.z_h, t.w_out, False),
                                ("linear gelu.eps + matmul (MLP in)", t.g_u, t.u, t.w_in, True)):
        rows.append((name, lambda g=g, z=z, w=w, gelu=gelu: rule_then_gemm(triton_b, g, z, w, gelu),
                     lambda g=g, z=z, w=w, gelu=gelu: rule_then_gemm(torch_b, g, z, w, gelu)))
        rows.append(("  bare matmul of it", lambda g=g, w=w: torch.matmul(g, w), None))
    return rows


def _attention_rows(t, torch_b, triton_b):
    def round_trip(backend, mode):
        kernels = backend.attention
        out, saved = kernels.forward(t.q, t.k, t.v, t.mask, t.scale, mode)
        return kernels.backward(t.g_o, t.q, t.k, t.v, t.mask, t.scale, mode, saved)

    return [(f"attention {mode} fwd+bwd", lambda m=mode: round_trip(triton_b, m), lambda m=mode: round_trip(torch_b, m))
            for mode in ("attnlrp", "cp_lrp")]


def _causal_rows(t, torch_b, triton_b):
    """Causal attention with 4 query heads per K/V head (2 at toy sizes), attnlrp fwd+bwd: unpadded against SDPA
    ``is_causal`` and its autograd backward (the fastest causal attention torch has: no mask tensor),
    left-padded against the torch backend (SDPA with the dense causal mask)."""
    import torch.nn.functional as F

    kv = max(1, t.q.shape[1] // 4)
    k, v = t.k[:, :kv], t.v[:, :kv]
    g = t.q.shape[1] // kv

    def ours(mask, backend=triton_b):
        out, saved = backend.attention.forward(t.q, k, v, mask, t.scale, "attnlrp", None, None, True)
        return backend.attention.backward(t.g_o, t.q, k, v, mask, t.scale, "attnlrp", saved, None, None, 0.0, True)

    def sdpa():
        leaves = [x.detach().requires_grad_(True) for x in (t.q, k, v)]
        out = F.scaled_dot_product_attention(*leaves, is_causal=True, scale=t.scale, enable_gqa=True)
        return torch.autograd.grad(out, leaves, t.g_o)

    return [(f"attn causal g{g} vs SDPA is_causal", lambda: ours(None), sdpa),
            (f"attn causal g{g} left-padded vs torch", lambda: ours(t.left_mask), lambda: ours(t.left_mask, torch_b))]


def _rowwise_rows(t, torch_b, triton_b):
    return [("layer_norm forward", lambda: triton_b.layer_norm.forward(t.x, t.w_ln, t.b_ln, 1e-12),
             lambda: torch_b.layer_norm.forward(t.x, t.w_ln, t.b_ln, 1e-12)),
            ("layer_norm backward", lambda: triton_b.layer_norm.backward(t.g_h, t.w_ln, t.rstd),
             lambda: torch_b.layer_norm.backward(t.g_h, t.w_ln, t.rstd)),
            ("gelu forward", lambda: triton_b.activation.forward(t.u, "gelu"),
             lambda: torch_b.activation.forward(t.u, "gelu")),
            ("rms_norm forward", lambda: triton_b.rms_norm.forward(t.x, t.w_ln, 1e-5),
             lambda: torch_b.rms_norm.forward(t.x, t.w_ln, 1e-5)),
            ("rms_norm backward", lambda: triton_b.rms_norm.backward(t.g_h, t.w_ln, t.rms_rstd),
             lambda: torch_b.rms_norm.backward(t.g_h, t.w_ln, t.rms_rstd)),
            ("gated_mlp swiglu backward", lambda: triton_b.gated_mlp.backward(t.g_u, t.u, t.up, "silu", 1e-6),
             lambda: torch_b.gated_mlp.backward(t.g_u, t.u, t.up, "silu", 1e-6))]


def _kernel_inputs(device, dtype, batch, seq, hidden, heads, inter):
    from types import SimpleNamespace

    from lrp_kernels.backends.torch import layer_norm, rms_norm

    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    t = SimpleNamespace(scale=(hidden // heads) ** -0.5, mask=torch.zeros(batch, seq, device=device))
    t.mask[batch // 2:, seq - seq // 4:] = torch.finfo(torch.float32).min  # half the batch ¼ padded
    t.left_mask = t.mask.flip(1)  # the same padding on the left (decoders)
    t.x, t.g_h, t.z_h = rand(batch, seq, hidden, scale=2.0), rand(batch, seq, hidden), rand(batch, seq, hidden)
    t.w_ln, t.b_ln = rand(hidden), rand(hidden)
    t.rstd = layer_norm.forward(t.x, t.w_ln, t.b_ln, 1e-12)[2]
    t.rms_rstd = rms_norm.forward(t.x, t.w_ln, 1e-5)[1]
    t.u, t.g_u = rand(batch, seq, inter, scale=2.0), rand(batch, seq, inter)
    t.up = rand(batch, seq, inter)  # b of a SwiGLU whose a is t.u (EuroBERT's up projection)
    t.w_out, t.w_in = rand(hidden, inter, scale=inter**-0.5), rand(inter, hidden, scale=hidden**-0.5)
    t.q, t.k, t.v, t.g_o = (rand(batch, seq, hidden).view(batch, seq, heads, -1).transpose(1, 2) for _ in range(4))
    return t


def kernels(args) -> int:
    from lrp_kernels.backends import resolve

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch_b, triton_b = resolve("torch", device), resolve("triton", device)
    batch, seqs, (hidden, heads, inter) = (2, (16,), (32, 2, 48)) if args.tiny else (32, (128, 512), (768, 12, 3072))
    print(f"kernel rows, {args.dtype}, batch {batch}: median ms; speed-up = torch / triton")
    print(f"{'row':36s} {'L':>4s} {'triton':>9s} {'torch':>9s} {'speed-up':>8s}")
    for seq in seqs:
        t = _kernel_inputs(device, dtype, batch, seq, hidden, heads, inter)
        for name, ours, theirs in (_linear_rows(t, torch_b, triton_b) + _attention_rows(t, torch_b, triton_b)
                                   + _causal_rows(t, torch_b, triton_b) + _rowwise_rows(t, torch_b, triton_b)):
            a = _bench(ours, device, 3)
            b = _bench(theirs, device, 3) if theirs else None
            tail = f"{b:9.3f} {b / a:7.2f}x" if b else f"{'':9s}"
            print(f"{name:36s} {seq:4d} {a:9.3f} {tail}", flush=True)
    return 0


# ---------------------------------------------------------------------------------- edge cases
def _attention_error(q, mask, mode="attnlrp") -> float:
    """Largest error of Triton's attention (output and gradients) relative to the largest value,
    against the torch reference in float32 on the same inputs."""
    from lrp_kernels.backends import resolve

    triton_b, torch_b = resolve("triton", q.device), resolve("torch", q.device)
    k, v, g = (torch.randn_like(q) for _ in range(3))
    scale = q.shape[-1] ** -0.5
    out, saved = triton_b.attention.forward(q, k, v, mask, scale, mode)
    got = (out, *triton_b.attention.backward(g, q, k, v, mask, scale, mode, saved))
    q32, k32, v32, g32 = (t.float() for t in (q, k, v, g))
    out32, saved32 = torch_b.attention.forward(q32, k32, v32, mask, scale, mode)
    want = (out32, *torch_b.attention.backward(g32, q32, k32, v32, mask, scale, mode, saved32))
    return max(float((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-30))
               for a, b in zip(got, want) if b is not None)


def _edge_cases(args):
    """(name, build q and mask) of each edge case at full or tiny size."""
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    bh_batch = 2 if args.tiny else 5462  # ×12 heads = 65,544 > 65,535
    long = 16 if args.tiny else 512

    def heads(b, length, h, d):
        return torch.randn(b, length, h * d, device=dev).to(dtype).view(b, length, h, d).transpose(1, 2)

    def padded(b, length, lengths):
        mask = torch.zeros(b, length, device=dev)
        for i, n in enumerate(lengths):
            mask[i, n:] = torch.finfo(torch.float32).min
        return mask

    return [
        ("head dim 256", lambda: (heads(2, 8 if args.tiny else 256, 4, 256), None)),
        (f"B*H = {bh_batch * 12}", lambda: (heads(bh_batch, 16, 12, 64), padded(bh_batch, 16, [16, 9] * (bh_batch // 2)))),
        (f"fully padded sequence, L {long}", lambda: (heads(4, long, 12, 64), padded(4, long, [long, long // 2, 0, 3]))),
    ]


def edge(args) -> int:
    #: bf16 tolerance of one attention against float32 (one rounding of the inputs' products)
    tolerance = {"bfloat16": 3e-2, "float16": 4e-3, "float32": 1e-4}[args.dtype]
    print(f"edge cases, {args.dtype}: Triton attention (output and gradients, attnlrp and cp_lrp) vs the float32 "
          f"torch reference; max error relative to the largest value (ok below {tolerance:g})")
    failed = 0
    for name, make in _edge_cases(args):
        try:
            q, mask = make()
            error = max(_attention_error(q, mask, mode) for mode in ("attnlrp", "cp_lrp"))
            status = "ok" if error <= tolerance else "FAIL"
            print(f"{name:34s} {error:10.2e} {status}", flush=True)
        except Exception as exc:  # a crash is the finding (OutOfResources, a grid limit, ...)
            error, status = float("nan"), "FAIL"
            print(f"{name:34s} {'-':>10s} FAIL {type(exc).__name__}: {str(exc).splitlines()[0][:90]}", flush=True)
        failed += status != "ok"
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
    print(f"edge cases failed: {failed}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["e2e", "kernels", "edge", "all"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the CPU check under TRITON_INTERPRET=1)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows survive a timeout that kills the script
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_e2e: no CUDA device, nothing to measure")
        return 0
    torch.manual_seed(0)
    sections = {"e2e": e2e, "kernels": kernels, "edge": edge}
    chosen = list(sections) if args.section == "all" else [args.section]
    status = 0
    for name in chosen:
        status |= sections[name](args)
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
