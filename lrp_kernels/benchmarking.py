"""Timing and memory measurement shared by ``lrp-kernels bench`` and ``benchmarks/``.

What is timed (one callable per row, each returning nothing):

``forward``        the logits under ``torch.no_grad`` — the price of a prediction
``gradient``       the plain gradient of the target logit w.r.t. the embedding sum with frozen
                   parameters (one forward with autograd, one backward of plain torch ops): the
                   floor an LRP method that is "one modified backward" is measured against
``<method>``       :func:`lrp_kernels.attribute` with that method (``grad_x_input`` is the same
                   gradient plus the input product, through the public entry point)

Times are medians of ``repeat`` runs after ``warmup`` runs. Rows that are compared with each other
are timed *interleaved* (round-robin: one run of each, ``repeat`` times) so that a slow phase of a
shared machine hits all of them alike. Peak memory is the CUDA allocator's peak on a GPU and, on the
CPU, the peak of bytes held by tensors that the profiler's memory tracking sees
(:func:`cpu_peak_bytes`), both measured in a separate run above the memory held before the call.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


@dataclass
class Timing:
    """Median seconds (and all samples) and peak bytes of one benchmarked callable."""

    name: str
    samples: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        """The fastest run: on a shared machine the least disturbed one."""
        return min(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = ±5 % jitter); the full range when
        there are fewer than four samples."""
        if len(self.samples) < 2:
            return 0.0
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# on_round(round index from 0, warm-up rounds, all rounds, {name: seconds of this round})
RoundReport = Callable[[int, int, int, dict[str, float]], object]


def time_interleaved(fns: dict[str, Callable[[], object]], device, repeat: int = 5, warmup: int = 1,
                     on_round: RoundReport | None = None) -> dict[str, Timing]:
    """Median wall time of every callable, run round-robin ``repeat`` times after ``warmup`` rounds;
    ``on_round`` hears each round's times as it ends."""
    device = torch.device(device)
    timings = {name: Timing(name) for name in fns}
    for round_index in range(warmup + repeat):
        seconds = {}
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds[name] = time.perf_counter() - start
            if round_index >= warmup:
                timings[name].samples.append(seconds[name])
        if on_round is not None:
            on_round(round_index, warmup, warmup + repeat, seconds)
    return timings


@contextlib.contextmanager
def quiet_stderr():
    """Whatever is written to file descriptor 2 meanwhile (the profiler's C++ log lines) is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes held by CPU tensors during ``fn()``, above what was held before it.

    Replays the allocation events of :mod:`torch.profiler` (``profile_memory=True``): every
    allocation and free of the CPU allocator in order, so the peak is exact for tensors (not the
    process RSS, which also counts the allocator's cached pages and the interpreter).
    """
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    held = peak = 0
    for _, delta in events:
        held += delta
        peak = max(peak, held)
    return peak


def peak_bytes(fn: Callable[[], object], device) -> int:
    """Peak bytes allocated during ``fn()`` above the memory held before the call."""
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return cpu_peak_bytes(fn)


def measure(fns: dict[str, Callable[[], object]], device, repeat: int = 5, warmup: int = 1,
            memory: bool = True, on_round: RoundReport | None = None) -> dict[str, Timing]:
    """Interleaved timings of ``fns`` and, with ``memory``, the peak memory of one more run of each."""
    timings = time_interleaved(fns, device, repeat=repeat, warmup=warmup, on_round=on_round)
    if memory:
        for name, fn in fns.items():
            timings[name].peak_bytes = peak_bytes(fn, device)
    return timings


#: the published base configurations (config.json names) of each family's reference checkpoint
BASE_CONFIGS: dict[str, dict] = {
    # bert-base-uncased
    "bert": dict(model_type="bert", vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, **BERT_BASE),
    # roberta-base
    "roberta": dict(model_type="roberta", vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                    pad_token_id=1, layer_norm_eps=1e-5, **BERT_BASE),
    # xlm-roberta-base: the 250k SentencePiece vocabulary
    "xlm-roberta": dict(model_type="xlm-roberta", vocab_size=250002, max_position_embeddings=514, type_vocab_size=1,
                        pad_token_id=1, layer_norm_eps=1e-5, **BERT_BASE),
    # camembert-base
    "camembert": dict(model_type="camembert", vocab_size=32005, max_position_embeddings=514, type_vocab_size=1,
                      pad_token_id=1, layer_norm_eps=1e-5, **BERT_BASE),
    # distilbert-base-uncased: 6 layers
    "distilbert": dict(model_type="distilbert", vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                       max_position_embeddings=512, activation="gelu"),
    # google/electra-base-discriminator: embedding_size = hidden_size, so no embeddings_project
    "electra": dict(model_type="electra", vocab_size=30522, embedding_size=768, max_position_embeddings=512,
                    type_vocab_size=2, **BERT_BASE),
    # albert-base-v2: 128-wide factorized embeddings, one shared layer group applied 12 times
    "albert": dict(model_type="albert", vocab_size=30000, embedding_size=128, max_position_embeddings=512,
                   type_vocab_size=2, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new", **BERT_BASE),
}


def randomize(model, seed: int = 0):
    """Random weights in place, as ``transformers`` initializes them: norms γ = 1, β = 0; biases 0;
    every other parameter normal with std ``initializer_range``. Frozen, eval mode; returns the model."""
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    std = model.config.initializer_range
    with torch.no_grad():
        for name, param in model.named_parameters():
            owner = model.get_submodule(name.rpartition(".")[0])
            if isinstance(owner, nn.LayerNorm) or type(owner).__name__.endswith("Norm"):  # γ = 1 (offset + weight)
                param.fill_(1.0 - getattr(owner, "offset", 0.0) if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval().requires_grad_(False)


def random_bert(num_labels: int = 2, seed: int = 0, dtype=torch.float32, device="cpu", **sizes):
    """A BERT classifier with random weights (:func:`randomize`), eval mode, frozen. ``sizes``
    override :data:`BERT_BASE` (hidden_size, num_hidden_layers, ...)."""
    from lrp_kernels.models import BertClassifier, ModelConfig

    model = BertClassifier(ModelConfig(**{**BERT_BASE, **sizes}, num_labels=num_labels))
    return randomize(model, seed).to(device=device, dtype=dtype)


def random_model(config, seed: int = 0, dtype=torch.float32, device="cpu"):
    """The classifier of ``config``'s family (a :class:`~lrp_kernels.models.ModelConfig`) with random
    weights (:func:`randomize`), eval mode, frozen."""
    from lrp_kernels.models import build

    with torch.device("meta"):
        model = build(config)
    return randomize(model.to_empty(device="cpu"), seed).to(device=device, dtype=dtype)


def random_classifier(model_type: str, num_labels: int = 2, seed: int = 0, dtype=torch.float32, device="cpu"):
    """Our classifier of ``model_type`` with random weights (:func:`randomize`) at the real base size
    of its family (:data:`BASE_CONFIGS`): the model the base-size benchmarks time."""
    from lrp_kernels.models import config_from_dict

    if model_type not in BASE_CONFIGS:
        raise ValueError(f"no base configuration for {model_type!r}; have {', '.join(BASE_CONFIGS)}")
    config = config_from_dict(BASE_CONFIGS[model_type], num_labels=num_labels, source=f"{model_type}-base")
    return random_model(config, seed, dtype, device)


def random_inputs(config, batch: int, seq: int, seed: int = 0, device="cpu", padded: bool = False):
    """Token ids (``[CLS] … [SEP]`` shaped, ids ≥ 5), all-ones mask or, with ``padded``, a mask whose
    rows keep between half and all of the tokens; token type ids are zeros."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if padded:
        lengths = torch.randint(max(1, seq // 2), seq + 1, (batch,), generator=generator)
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        ids = ids.masked_fill(mask == 0, config.pad_token_id)
    return ids.to(device), mask.to(device), torch.zeros_like(ids).to(device)


def plain_gradient(model, input_ids, attention_mask, token_type_ids, target=None):
    """∂ logit_target / ∂ e at the embedding sum e with frozen parameters: one forward, one backward
    of the plain ops (no LRP function anywhere). Returns the gradient [B, L, hidden]."""
    with torch.no_grad():
        e = model.embed(input_ids, token_type_ids, attention_mask=attention_mask)
    e.requires_grad_(True)
    with torch.enable_grad():
        logits = model.forward_from_embeddings(e, attention_mask, read_index=model.read_index(input_ids, attention_mask))
        if target is None:
            target = logits.detach().argmax(dim=-1)
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), e)
    return grad


def standard_rows(model, input_ids, attention_mask, token_type_ids, methods: Sequence[str],
                  backend: str | None = None, eps: float = 1e-6) -> dict[str, Callable[[], object]]:
    """The callables of ``forward``, ``gradient`` and every method, on the same inputs."""
    from lrp_kernels.attribution import attribute

    def forward():
        with torch.no_grad():
            return model(input_ids, attention_mask, token_type_ids)

    rows: dict[str, Callable[[], object]] = {
        "forward": forward,
        "gradient": lambda: plain_gradient(model, input_ids, attention_mask, token_type_ids),
    }
    for method in methods:
        rows[method] = (lambda m: lambda: attribute(
            model, input_ids, attention_mask, token_type_ids, method=m, backend=backend, eps=eps))(method)
    return rows


def backend_rows(model, input_ids, attention_mask, token_type_ids, methods: Sequence[str],
                 backends: Sequence[str], eps: float = 1e-6) -> dict[str, Callable[[], object]]:
    """``forward``, ``gradient`` and ``<method>/<backend>`` for every method on every backend, on the
    same inputs (to be timed interleaved)."""
    rows = standard_rows(model, input_ids, attention_mask, token_type_ids, ())
    for backend in backends:
        fns = standard_rows(model, input_ids, attention_mask, token_type_ids, methods, backend, eps)
        rows.update({f"{method}/{backend}": fns[method] for method in methods})
    return rows


def add_shape_arguments(parser, threads: int | None = 1) -> None:
    """The benchmarks' common flags: ``--batch`` (8), ``--seq`` (128) and ``--threads`` (torch CPU
    threads; None: torch's choice)."""
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=threads, help=f"torch CPU threads (default: {threads or 'torch'})")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f}" if n >= 10 * 2**20 else f"{n / 2**20:.2f}"
