"""``target="all"`` against a loop over the classes, and the vector-Jacobian alternative.

    python benchmarks/target_all.py [--labels 5] [--batch 8] [--seq 128] [--threads 1] [--rounds 3]

A BERT-base-size random classifier (``lrp_kernels.benchmarking.random_bert``) with ``--labels``
labels, on the CPU. Rows, timed interleaved (round-robin), per method:

``loop``   one :func:`lrp_kernels.attribute` call per class (``--labels`` forwards and backwards)
``all``    ``attribute(..., target="all")``: one forward and one backward over the batch repeated
           once per label (what the library does)
``vjp``    one forward over the batch, then ``torch.autograd.grad(..., is_grads_batched=True)``
           with one seed per label (vmap over the backward); only where it runs — the LRP autograd
           Functions do not support vmap, and the reason is printed instead

Reports medians; asserts nothing. Say the machine's load next to the numbers (printed).
"""

from __future__ import annotations

import argparse
import os

import torch

from lrp_kernels import attribute
from lrp_kernels.backends.registry import resolve
from lrp_kernels.benchmarking import add_shape_arguments, format_table, random_bert, random_inputs, time_interleaved
from lrp_kernels.methods import get_method


def vjp_scores(model, ids, mask, types, method: str, backend: str | None):
    """Scores [batch, labels, seq] from one forward and a vmapped backward (one seed per label)."""
    spec = get_method(method)
    n_labels = model.config.num_labels
    with torch.no_grad():
        e = model.embed(ids, types)
    e.requires_grad_(True)
    with torch.enable_grad():
        taps = ("embedding_output",) if spec.read_at == "embedding_output" else ()
        logits, p = model.run(e, mask, spec.rules(1e-6), resolve(backend, ids.device), taps=taps)
        x = p.tapped["embedding_output"] if taps else e
        seeds = torch.eye(n_labels)[:, None, :].expand(n_labels, *logits.shape).contiguous()
        (grad,) = torch.autograd.grad(logits, x, seeds, is_grads_batched=True)
    return (x.detach()[None] * grad).sum(-1).transpose(0, 1)


def rows_for(model, inputs, method: str, backend: str | None) -> tuple[dict, str | None]:
    ids, mask, types = inputs
    n_labels = model.config.num_labels
    rows = {
        f"{method} loop": lambda: [attribute(model, ids, mask, types, method=method, target=k, backend=backend)
                                   for k in range(n_labels)],
        f"{method} all": lambda: attribute(model, ids, mask, types, method=method, target="all", backend=backend),
    }
    try:
        small = tuple(t[:1, :8] for t in inputs)
        got = vjp_scores(model, *small, method, backend)
        want = attribute(model, *small, method=method, target="all", backend=backend).scores
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return rows, f"vjp differs from target='all' (max |Δ| {(got - want).abs().max():.3g})"
    except RuntimeError as exc:
        return rows, f"vjp does not run: {str(exc).splitlines()[0][:160]}"
    rows[f"{method} vjp"] = lambda: vjp_scores(model, ids, mask, types, method, backend)
    return rows, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=5)
    add_shape_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="attnlrp,grad_x_input")
    parser.add_argument("--backend", default=None, help="LRP kernels (default: auto)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = random_bert(num_labels=args.labels)
    inputs = random_inputs(model.config, args.batch, args.seq)
    print(f"BERT-base size, {args.labels} labels, batch {args.batch} x seq {args.seq}, {args.threads} thread(s), "
          f"backend {resolve(args.backend, torch.device('cpu')).name}, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    table = []
    for method in args.methods.split(","):
        rows, note = rows_for(model, inputs, method, args.backend)
        timings = time_interleaved(rows, "cpu", repeat=args.rounds, warmup=1)
        loop = timings[f"{method} loop"].median
        for name, t in timings.items():
            table.append([name, f"{t.median:.2f}", f"{t.best:.2f}", f"{t.median / loop:.2f}"])
        if note:
            table.append([f"{method} vjp", "-", "-", note])
    print(format_table(["row", "median s", "best s", "vs loop"], table))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
