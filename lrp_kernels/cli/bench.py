"""``lrp-kernels bench``: time the forward, the plain gradient and the attribution methods of
``--methods`` (default :data:`DEFAULT_METHODS`, the one-backward methods).

One table: per row the median time of ``--repeat`` runs (rows run interleaved, round-robin, so a
busy machine slows them alike), its ratio to the forward and to the plain gradient, tokens per
second (batch × seq / time) and the peak memory of one more run above what was held before it
(the CUDA allocator's peak on a GPU; on the CPU the peak of bytes held by tensors, from the
profiler's allocation events).

``forward`` is the logits under ``no_grad``; ``gradient`` is ∂ logit / ∂ e at the embedding sum with
frozen parameters — one forward and one backward of the plain ops, the floor of a one-backward LRP
method. Models: ``minilm`` (the offline pretrained MiniLM-L6), ``bert-base`` (12 layers, hidden
768, 12 heads, intermediate 3072, random weights), ``tiny`` (2 layers, hidden 32), or a Hugging Face
checkpoint directory.
"""

from __future__ import annotations

import argparse
import sys

from lrp_kernels.cli._common import add_option, require_non_negative, require_positive
from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.options import parse_device, parse_dtype, parse_methods, resolve_model_path, set_threads

DEFAULT_METHODS = ("grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp")
NAMED_MODELS = ("minilm", "bert-base", "tiny")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "model", default="bert-base",
               help=f"{', '.join(NAMED_MODELS)} or a Hugging Face checkpoint directory (default: bert-base)")
    add_option(parser, "batch_size", default=8, help="sequences per batch (default: 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence, no padding (default: 128)")
    add_option(parser, "device", default="cpu")
    add_option(parser, "dtype", default="float32")
    add_option(parser, "backend", default="auto")
    add_option(parser, "methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per row (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    add_option(parser, "threads")
    add_option(parser, "eps")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")


def _check(args) -> tuple[str, ...]:
    """The methods to time, after a one-line error for any bad number."""
    require_positive(args, "batch_size", "seq", "repeat")
    require_non_negative(args, "warmup", "eps")
    return parse_methods(args.methods)


def load_model(name: str, dtype, device):
    """The model named by ``--model``: a named benchmark model or a checkpoint directory."""
    import warnings

    from lrp_kernels.benchmarking import random_bert
    from lrp_kernels.models import load_pretrained

    if name == "bert-base":
        return random_bert(dtype=dtype, device=device)
    if name == "tiny":
        return random_bert(dtype=dtype, device=device, vocab_size=100, max_position_embeddings=512, **TINY)
    try:
        path = resolve_model_path(name)
    except CheckpointError as exc:
        if name == "minilm":
            raise
        raise InputError(f"--model {name!r} is neither one of {', '.join(NAMED_MODELS)} nor a checkpoint "
                         f"directory ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a headless encoder gets a fresh (seeded) classification head
        model = load_pretrained(path, num_labels=2, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


def run(args) -> int:
    from lrp_kernels.benchmarking import measure, random_inputs, standard_rows

    methods = _check(args)
    device = parse_device(args.device)
    dtype = parse_dtype(args.dtype)
    set_threads(args.threads)
    backend_name = _backend(args.backend, device)
    model = load_model(args.model, dtype, device)
    if args.seq > model.config.max_tokens:
        raise InputError(f"--seq {args.seq} exceeds the model's {model.config.max_tokens} positions")
    input_ids, attention_mask, token_type_ids = random_inputs(model.config, args.batch_size, args.seq, device=device)
    rows = standard_rows(model, input_ids, attention_mask, token_type_ids, methods, backend=backend_name, eps=args.eps)
    print(_setup_line(args, model.config, dtype, device, backend_name), flush=True)
    timings = measure(rows, device, repeat=args.repeat, warmup=args.warmup, memory=not args.no_memory,
                      on_round=_print_round)
    print(_table(timings, tokens=args.batch_size * args.seq))
    return 0


def _print_round(index: int, warmup: int, rounds: int, seconds: dict[str, float]) -> None:
    """One line on stderr per round, as it ends (the table follows on stdout)."""
    what = f"warm-up {index + 1}/{warmup}" if index < warmup else f"round {index - warmup + 1}/{rounds - warmup}"
    times = ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in seconds.items())
    print(f"bench: {what}: {times}", file=sys.stderr, flush=True)


def _backend(name: str, device) -> str:
    """The backend that ``--backend`` resolves to on ``device``."""
    from lrp_kernels.backends import resolve

    return resolve(name, device).name  # unknown names and unavailable backends: one-line errors


def _setup_line(args, cfg, dtype, device, backend_name: str) -> str:
    import torch

    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return (f"model {args.model} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
            f"{cfg.num_attention_heads} heads, intermediate {cfg.intermediate_size}), batch {args.batch_size} x seq "
            f"{args.seq}, {str(dtype).replace('torch.', '')}, {device}{threads}, backend {backend_name}, "
            f"torch {torch.__version__}; median of {args.repeat}")


def _table(timings, tokens: int) -> str:
    """One row per timing: median, spread, ratios to forward and gradient, tokens/s, peak memory."""
    from lrp_kernels.benchmarking import format_table, mib

    forward = timings["forward"].median
    gradient = timings["gradient"].median
    table = [[name, f"{t.median * 1e3:.1f}", f"{t.spread * 100:.0f}%", f"{t.median / forward:.2f}",
              f"{t.median / gradient:.2f}", f"{tokens / t.median:.0f}", mib(t.peak_bytes)]
             for name, t in timings.items()]
    return format_table(["row", "median ms", "IQR", "x forward", "x gradient", "tokens/s", "peak MiB"], table)
