"""Base-size figures of model families II (ModernBERT, EuroBERT, DeBERTa-v3) and of a decoder (Llama) per
backend (cpp, torch).

Random weights in the published dimensions of answerdotai/ModernBERT-base, EuroBERT/EuroBERT-210m,
microsoft/deberta-v3-base and meta-llama/Llama-3.2-1B cut to its first 4 layers (hard-coded below:
nothing is downloaded); batch 8 × 128 tokens (Llama: 4 × 512), float32, CPU, one thread by default. Rows: ``forward`` (logits, no autograd), ``gradient`` (the plain gradient
at the embedding sum: one forward with autograd and one backward of plain ops — the floor of a
one-backward method), ``attnlrp`` and ``cp_lrp`` through :func:`lrp_kernels.attribute` on each of
``--backends``. Medians of ``--repeat`` interleaved runs (every row of a family, every backend) after
one warm-up; the ratios attnlrp / gradient and cp_lrp / gradient are the figures of the issue (target
≤ 1.05), of the medians and of the fastest runs (on a shared machine the least disturbed ones). Where
a median ratio misses the target, ``--profile`` prints a torch.profiler table of where the time goes
(the LRP method next to the plain gradient).

    python benchmarks/families_ii.py [--families modernbert eurobert deberta] [--backends cpp torch]
                                     [--threads 1] [--repeat 5] [--profile]

It reports, it never asserts. The machine load (``os.getloadavg``) is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from lrp_kernels.benchmarking import backend_rows, format_table, random_inputs, random_model, time_interleaved
from lrp_kernels.models import config_from_dict

BATCH, SEQ = 8, 128
TARGET = 1.05
METHODS = ("attnlrp", "cp_lrp")

#: the published config.json values that matter for the forward (hub names; random weights)
CONFIGS = {
    "modernbert": {  # answerdotai/ModernBERT-base
        "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152,
        "num_hidden_layers": 22, "num_attention_heads": 12, "hidden_activation": "gelu", "norm_eps": 1e-5,
        "norm_bias": False, "attention_bias": False, "mlp_bias": False, "global_attn_every_n_layers": 3,
        "local_attention": 128, "global_rope_theta": 160000.0, "local_rope_theta": 10000.0,
        "max_position_embeddings": 8192, "classifier_pooling": "mean", "classifier_activation": "gelu",
        "classifier_bias": False, "pad_token_id": 50283,
    },
    "eurobert": {  # EuroBERT/EuroBERT-210m
        "model_type": "eurobert", "vocab_size": 128256, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12, "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "rope_theta": 250000, "max_position_embeddings": 8192, "attention_bias": False,
        "mlp_bias": False, "clf_pooling": "late", "pad_token_id": 128001,
    },
    "deberta": {  # microsoft/deberta-v3-base
        "model_type": "deberta-v2", "vocab_size": 128100, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "gelu", "layer_norm_eps": 1e-7,
        "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 256,
        "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": "p2c|c2p",
        "max_relative_positions": -1, "position_biased_input": False, "type_vocab_size": 0,
        "pooler_hidden_size": 768, "pooler_hidden_act": "gelu", "pad_token_id": 0,
    },
    "llama": {  # meta-llama/Llama-3.2-1B, 4 of its 16 layers; pad = <|finetune_right_pad_id|>
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "pad_token_id": 128004,
        "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    },
}
#: (batch, seq) where a family is timed at another shape than BATCH × SEQ
SHAPES = {"llama": (4, 512)}
#: (family, method) whose target is not TARGET: the decoder issue asks cp_lrp ≤ 1.0 × the gradient
TARGETS = {("llama", "cp_lrp"): 1.0}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def profile_table(fn, rows: int = 15) -> str:
    """torch.profiler's table of one run of ``fn``, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def bench_family(name: str, backends: list[str], repeat: int, profile: bool) -> list:
    """One table row per backend: medians (s), ratios to the plain gradient, the largest spread."""
    config = config_from_dict(CONFIGS[name], num_labels=2)
    model = random_model(config)
    ids, mask, types = random_inputs(config, *SHAPES.get(name, (BATCH, SEQ)))
    fns = backend_rows(model, ids, mask, types, METHODS, backends)
    timings = time_interleaved(fns, "cpu", repeat=repeat, warmup=1)
    grad = timings["gradient"]
    rows = []
    for backend in backends:
        keys = [f"{m}/{backend}" for m in METHODS]
        shape = "b{} x L{}".format(*SHAPES.get(name, (BATCH, SEQ)))
        row = [name, shape, backend, *(f"{timings[k].median:.2f}" for k in ("forward", "gradient", *keys))]
        row += [f"{timings[k].median / grad.median:.3f}" for k in keys]
        row += [f"{timings[k].best / grad.best:.3f}" for k in keys]
        row += [f"{max(timings[k].spread for k in ('forward', 'gradient', *keys)):.2f}"]
        rows.append(row)
    missed = [k for k in fns if "/" in k and timings[k].median / grad.median > TARGETS.get((name, k.split("/")[0]), TARGET)]
    for key in ("gradient", *missed) if profile and missed else ():
        print(f"\n# {name}: profile of {key}\n{profile_table(fns[key])}", flush=True)
    del model
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=[f for f in CONFIGS if f != "llama"], choices=list(CONFIGS),
                        help="default: the encoders (llama, 4 layers of b4 x L512, takes minutes per run)")
    parser.add_argument("--backends", nargs="+", default=["cpp", "torch"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile the methods that miss the target")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), float32; {load_average()}", flush=True)
    rows = [row for name in args.families for row in bench_family(name, args.backends, args.repeat, args.profile)]
    headers = ["family", "shape", "backend", "forward s", "gradient s", *(f"{m} s" for m in METHODS),
               *(f"{m}/grad" for m in METHODS), *(f"{m}/grad best" for m in METHODS), "max spread"]
    print("\n" + format_table(headers, rows))
    print(f"\n{load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
