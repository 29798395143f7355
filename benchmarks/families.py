"""Base-size timings of every model family: forward, plain gradient, attnlrp and cp_lrp.

Each family's classifier with random weights of its real base configuration
(:data:`lrp_kernels.benchmarking.BASE_CONFIGS`: bert-base-uncased, roberta-base, xlm-roberta-base,
camembert-base, distilbert-base-uncased, google/electra-base-discriminator, albert-base-v2),
batch 8 × seq 128 (no padding), float32 on the CPU, one thread. Per model, every row — the forward,
the plain gradient (the floor of a one-backward method) and each method on each backend — runs
interleaved (round-robin) so that a busy machine slows them alike; the median of ``--repeat`` runs
is reported with the ratios method / plain gradient (target ≤ 1.05, as for BERT). The machine load
(``os.getloadavg``) is printed before and after each model. It reports, it does not assert.

    OMP_NUM_THREADS=1 python benchmarks/families.py                      # every family, cpp and torch
    OMP_NUM_THREADS=1 python benchmarks/families.py --models albert,distilbert --json out.json
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import torch  # noqa: E402

from lrp_kernels.benchmarking import (  # noqa: E402
    BASE_CONFIGS, add_shape_arguments, backend_rows, format_table, measure, random_classifier, random_inputs,
)

METHODS = ("attnlrp", "cp_lrp")


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def family_rows(model_type: str, backends, batch: int, seq: int):
    """The callables of one model: forward, gradient, and ``method/backend`` for every pair."""
    model = random_classifier(model_type)
    ids, mask, types = random_inputs(model.config, batch, seq)
    return backend_rows(model, ids, mask, types, METHODS, backends)


def bench_family(model_type: str, args) -> dict:
    print(f"{model_type}: {load()}", flush=True)
    timings = measure(family_rows(model_type, args.backends, args.batch, args.seq), "cpu", repeat=args.repeat,
                      warmup=args.warmup, memory=False)
    print(f"{model_type}: done, {load()}", flush=True)
    return {"medians_s": {name: t.median for name, t in timings.items()},
            "best_s": {name: t.best for name, t in timings.items()},
            "spread": {name: t.spread for name, t in timings.items()}}


def report(results: dict, backends) -> str:
    """Medians (ms) and their ratios to the plain gradient; the ratios of the fastest runs next to
    them (on a shared machine the least disturbed ones); the largest spread (IQR / median) of the row."""
    headers = ["model", "backend", "forward ms", "gradient ms", "attnlrp ms", "cp_lrp ms",
               "attnlrp/grad", "cp_lrp/grad", "best: attnlrp/grad", "cp_lrp/grad", "max spread"]
    table = []
    for model_type, result in results.items():
        m, b = result["medians_s"], result["best_s"]
        for backend in backends:
            a, c = f"attnlrp/{backend}", f"cp_lrp/{backend}"
            spread = max(result["spread"][k] for k in ("forward", "gradient", a, c))
            table.append([model_type, backend, *(f"{m[k] * 1e3:.0f}" for k in ("forward", "gradient", a, c)),
                          f"{m[a] / m['gradient']:.3f}", f"{m[c] / m['gradient']:.3f}",
                          f"{b[a] / b['gradient']:.3f}", f"{b[c] / b['gradient']:.3f}", f"{spread * 100:.0f}%"])
    return format_table(headers, table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BASE_CONFIGS), help="comma-separated model_types")
    parser.add_argument("--backends", default="cpp,torch", help="comma-separated backends (default: cpp,torch)")
    add_shape_arguments(parser)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write the medians (seconds) to this file")
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch} x seq {args.seq}, float32, cpu, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, median of {args.repeat} (+{args.warmup} warm-up), rows interleaved; {load()}")
    results = {m: bench_family(m, args) for m in args.models.split(",") if m}
    print(report(results, args.backends))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
