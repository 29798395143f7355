"""``lrp-kernels evaluate``: run the faithfulness and ranking studies for a set of methods.

:func:`run_study` loads a checkpoint and a labelled split, explains every example with every method
(the predicted class), runs the selected metrics and writes CSV tables, PNG plots, ``report.md`` and
``index.html`` to the output directory (see :mod:`lrp_kernels.evaluation.report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from lrp_kernels.methods import METHODS, get_method
from lrp_kernels.models.config import SINGLE_LABEL
from lrp_kernels.errors import InputError
from lrp_kernels.evaluation import perturbation, ranking
from lrp_kernels.evaluation.items import Forward, Item, attribute_items, batched_logits, make_items, model_forward
from lrp_kernels.options import (
    check_max_length,
    counted,
    parse_device,
    parse_dtype,
    parse_methods,
    parse_names,
    resolve_model_path,
)

METRICS = ("deletion", "aopc", "abpc", "word_rank", "agreement")


@dataclasses.dataclass
class StudyConfig:
    """Options of :func:`run_study` (the CLI flags of ``evaluate`` have the same names with dashes)."""

    model: str
    task: str
    out: str
    data_dir: str | None = None
    split: str = "dev"
    methods: tuple[str, ...] = METHODS
    metrics: tuple[str, ...] = METRICS
    max_examples: int | None = None
    replacement: str = "pad"
    min_tokens: int = 10
    batch_size: int = 32
    eval_batch_size: int = 256
    max_length: int = 128
    device: str = "cpu"
    dtype: str | None = None
    backend: str | None = None
    ig_steps: int = 32
    eps: float = 1e-6
    word_rank_top: int = 10
    word_min_count: int = 3
    keep_stop_words: bool = False  # word rank: punctuation and stop words ranked too (ranking.RANK_RULE)
    #: word rank over the first N examples (attribution only; at least the evaluated ones) — a rank
    #: needs more examples than the perturbation metrics; None: the evaluated examples
    word_rank_examples: int | None = None
    heatmaps: int = 5
    model2: str | None = None
    task2: str | None = None
    data_dir2: str | None = None
    progress: bool = True
    title: str | None = None


def load_model_and_encoder(path: str, device: torch.device, max_length: int, dtype=None):
    """A :class:`~lrp_kernels.models.EncoderClassifier` in eval mode and its :class:`TextEncoder`."""
    from lrp_kernels.models.loading import load_pretrained
    from lrp_kernels.tokenization import TextEncoder

    path = resolve_model_path(path)
    model = load_pretrained(path, device=device, dtype=parse_dtype(dtype)).eval()
    encoder = TextEncoder.from_pretrained(path, max_length=max_length).fit(model.config)
    return model, encoder


def load_examples(task: str, data_dir: str | None, split: str, max_examples: int | None, num_labels: int | None):
    """(texts, text_pairs or None, labels) of a labelled split, the first ``max_examples`` of it (labels
    checked against ``num_labels`` unless it is None: a regression's values are not class indices)."""
    from lrp_kernels.data import load_task

    dataset = load_task(task, data_dir, split)
    if "label" not in dataset.column_names:
        raise InputError(f"task {task}, split {split}: the file has no labels to evaluate against")
    if max_examples is not None:
        if max_examples < 1:
            raise InputError("--max-examples must be at least 1")
        dataset = dataset.select(range(min(max_examples, len(dataset))))
    if len(dataset) == 0:
        raise InputError(f"task {task}, split {split}: no examples")
    labels = [int(x) for x in dataset["label"]]
    if num_labels is not None and max(labels) >= num_labels:
        raise InputError(f"task {task} has label {max(labels)} but the model has only {num_labels} labels")
    pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(dataset["text"]), pairs, labels


def _check(config: StudyConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (methods, metrics) to run, after a one-line error for any bad option."""
    metrics = parse_names(config.metrics, METRICS, "metric")
    methods = parse_methods(config.methods)
    if config.min_tokens < 1:
        raise InputError("--min-tokens must be at least 1")
    if (config.task2 or config.data_dir2) and not config.model2:
        raise InputError("--task2/--data-dir2 need --model2")
    if config.backend is not None:
        from lrp_kernels.backends import resolve

        resolve(config.backend, parse_device(config.device))  # an unavailable backend: one line, before any work
    return methods, metrics


@dataclasses.dataclass
class _SecondModel:
    """Cross-dataset: a second model, the examples as it tokenizes them, and its own task's examples."""

    model: Any
    encoder: Any
    items: list[Item]  # the study's examples
    own_items: list[Item] | None  # examples of --task2 (None without it)

    @classmethod
    def load(cls, config: StudyConfig, device: torch.device, texts, pairs, labels) -> "_SecondModel":
        model, encoder = load_model_and_encoder(config.model2, device, config.max_length, config.dtype)
        own = None
        if config.task2:
            own = make_items(encoder, *load_examples(config.task2, config.data_dir2, config.split,
                                                     config.max_examples, _classes(model)))
        return cls(model, encoder, make_items(encoder, texts, pairs, labels), own)


class Study:
    """The model, its examples and the logits cache shared by every method; one row of results per method."""

    def __init__(self, config: StudyConfig, device: torch.device):
        self.model, self.encoder = load_model_and_encoder(config.model, device, config.max_length, config.dtype)
        if not self.model.accepts_padding:  # a decoder without a pad id: one sequence per batch
            config = dataclasses.replace(config, batch_size=1, eval_batch_size=1)
        reads_by_id = self.model.read_index(torch.zeros(1, 1, dtype=torch.long, device=device)) is not None
        if reads_by_id and config.replacement == "pad" and {"deletion", "abpc"} & set(config.metrics):
            warnings.warn("a decoder reads its score at the last token that is not the pad id: replacing the last "
                          "words by the pad id moves that position (--replacement unk or mask avoids it)", stacklevel=2)
        self.config, self.device = config, device
        self.replacement_id = perturbation.replacement_token_id(self.encoder, config.replacement)
        self.head = self.model.config.head
        ranked = config.word_rank_examples if "word_rank" in config.metrics else None
        loaded = None if config.max_examples is None or ranked is None else max(config.max_examples, ranked)
        texts, pairs, labels = load_examples(config.task, config.data_dir, config.split,
                                             config.max_examples if loaded is None else loaded, _classes(self.model))
        check_max_length(self.encoder.tokenizer, config.max_length, pairs is not None)
        #: the examples the word rank reads (the evaluated ones first); ``items``: the evaluated ones
        self.rank_items = make_items(self.encoder, texts, pairs, labels)
        self.items = self.rank_items[: config.max_examples] if loaded is not None else self.rank_items
        texts, labels = texts[: len(self.items)], labels[: len(self.items)]
        pairs = None if pairs is None else pairs[: len(self.items)]
        self.advance: Callable[[int], object] = _ignore  # a progress bar's update, per sequence scored
        self.forward = self._counted(model_forward(self.model))
        self.cache: dict[bytes, torch.Tensor] = {}  # logits of every sequence scored so far, across methods
        pairs_of = [(it.ids, it.types) for it in self.items]
        batched_logits(model_forward(self.model), pairs_of[:1], self.encoder.pad_id, 1, {})  # warm-up, not timed
        started = time.perf_counter()
        self.logits = batched_logits(self.forward, pairs_of, self.encoder.pad_id, config.eval_batch_size, self.cache)
        #: sequences per second of that first forward over the examples (the plan's time estimate)
        self.forward_rate = len(self.items) / max(time.perf_counter() - started, 1e-9)
        self.accuracy = None  # of a single-label classifier only: a label set or a value is not an argmax
        if self.head.problem_type == SINGLE_LABEL:
            self.accuracy = float(self.logits.argmax(dim=-1).eq(torch.tensor(labels)).float().mean())
        self.second = _SecondModel.load(config, device, texts, pairs, labels) if config.model2 else None
        self._perturbed: dict[tuple[str, ...], int] = {}

    def _counted(self, forward: Forward) -> Forward:
        def counted(ids, mask, types):
            logits = forward(ids, mask, types)
            self.advance(ids.shape[0])
            return logits

        return counted

    def plan(self, method: str, metrics: tuple[str, ...]) -> "MethodPlan":
        """The passes ``method`` will take (attribution, and the perturbed sequences of ``metrics``)."""
        kind = get_method(method).kind
        steps = self.config.ig_steps if kind == "integrated_gradients" else 1
        explained = len(self.rank_items if "word_rank" in metrics else self.items)
        if self.second is not None:
            explained += len(self.second.items) + len(self.second.own_items or ())
        if metrics not in self._perturbed:  # the same for every method
            self._perturbed[metrics] = perturbation.planned_sequences(self.items, self.logits, metrics,
                                                                      self.replacement_id, self.config.min_tokens,
                                                                      self.head)
        perturbed = self._perturbed[metrics]
        return MethodPlan(backward=explained * steps if kind in ("gradient", "integrated_gradients") else 0,
                          forward=explained if kind == "attention" else 0, perturbed=perturbed, steps=steps)

    def _attribute(self, model, items: list[Item], method: str, pad_id: int) -> tuple[list[Item], float]:
        steps = self.config.ig_steps if get_method(method).kind == "integrated_gradients" else 1
        return attribute_items(model, items, method, pad_id, self.config.batch_size, backend=self.config.backend,
                               ig_steps=self.config.ig_steps, eps=self.config.eps,
                               on_batch=lambda n: self.advance(n * steps))

    def method_row(self, method: str, metrics: tuple[str, ...]) -> tuple[list[Item], dict[str, Any]]:
        """The examples scored by ``method`` and its row of results."""
        ranked = "word_rank" in metrics and len(self.rank_items) > len(self.items)
        attributed, seconds = self._attribute(self.model, self.rank_items if ranked else self.items, method,
                                              self.encoder.pad_id)
        items = attributed[: len(self.items)]
        row: dict[str, Any] = {"attribution_seconds": seconds}
        started = time.perf_counter()
        row.update(self._metrics(items, metrics, attributed))
        if self.second is not None:
            row["cross_dataset"] = self._cross_dataset(method, items)
        row["metric_seconds"] = time.perf_counter() - started
        row["scored_sequences"] = len(self.cache)
        return items, row

    def _metrics(self, items: list[Item], metrics: tuple[str, ...], rank_items: list[Item]) -> dict[str, Any]:
        config, pad, batch, cache = self.config, self.encoder.pad_id, self.config.eval_batch_size, self.cache
        row: dict[str, Any] = {}
        if "deletion" in metrics:
            row["deletion"] = perturbation.word_deletion(items, self.forward, self.replacement_id, pad,
                                                         min_tokens=config.min_tokens, batch_size=batch, cache=cache,
                                                         head=self.head)
        if "aopc" in metrics:
            row["aopc"] = perturbation.aopc(items, self.forward, pad, batch_size=batch, cache=cache, head=self.head)
        if "abpc" in metrics:
            row["abpc"] = perturbation.abpc(items, self.forward, self.replacement_id, pad, batch_size=batch,
                                            cache=cache)
        if "word_rank" in metrics:
            row["word_rank"] = ranking.word_rank(rank_items, top=config.word_rank_top, min_count=config.word_min_count,
                                                 keep_stop_words=config.keep_stop_words)
        return row

    def _cross_dataset(self, method: str, items: list[Item]) -> dict[str, Any]:
        second, min_count = self.second, self.config.word_min_count
        items2, _ = self._attribute(second.model, second.items, method, second.encoder.pad_id)
        cross = {"per_example": ranking.cross_model_correlation(items, items2)}
        if second.own_items is not None:
            own, _ = self._attribute(second.model, second.own_items, method, second.encoder.pad_id)
            cross["word_rank"] = ranking.word_rank_correlation(ranking.mean_word_scores(items, min_count),
                                                               ranking.mean_word_scores(own, min_count))
        return cross

    def info(self, seconds: float) -> dict[str, Any]:
        """The setup the report describes."""
        config = self.config
        return {
            "model": str(config.model),
            "task": config.task,
            "split": config.split,
            "examples": len(self.items),
            "problem_type": self.head.problem_type,
            "accuracy": self.accuracy,
            "replacement": config.replacement,
            "min_tokens": config.min_tokens,
            "keep_stop_words": config.keep_stop_words,
            "word_rank_examples": len(self.rank_items),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "model2": config.model2,
            "task2": config.task2,
            "seconds": seconds,
            "title": config.title or (f"lrp-kernels evaluation: {Path(config.model).name} on {config.task} "
                                      f"{config.split}"),
        }


def _ignore(n: int) -> None:
    pass


def _classes(model) -> int | None:
    """The number of classes a split's labels must index (None for a regression: none)."""
    return None if model.config.head.is_regression else model.config.num_labels


@dataclasses.dataclass
class MethodPlan:
    """The passes one method takes: forward+backward (attribution), forward only (attention methods),
    and forward passes of perturbed sequences (before repeats are scored once)."""

    backward: int
    forward: int
    perturbed: int
    steps: int = 1

    @property
    def total(self) -> int:
        return self.backward + self.forward + self.perturbed


#: what one forward+backward (attribution) pass costs in forward passes, for the plan's estimate
BACKWARD_COST = 3.0


def estimate_seconds(plans: dict[str, MethodPlan], forward_rate: float | None) -> float | None:
    """The study's time from the speed of its first forward (sequences/s): a forward+backward pass as
    :data:`BACKWARD_COST` forwards, every perturbed sequence scored (an upper bound: repeats are
    scored once); None without a rate."""
    if not forward_rate:
        return None
    passes = sum(BACKWARD_COST * p.backward + p.forward + p.perturbed for p in plans.values())
    return passes / forward_rate


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def describe_plan(plans: dict[str, MethodPlan], examples: int, config: StudyConfig,
                  forward_rate: float | None = None) -> str:
    """One line: what the study will compute and about how long it takes (``forward_rate``: sequences
    per second of a forward, see :func:`estimate_seconds`), before it starts."""
    backward = sum(p.backward for p in plans.values())
    forward = sum(p.forward for p in plans.values())
    perturbed = sum(p.perturbed for p in plans.values())
    ig = next((p.steps for p in plans.values() if p.steps > 1), None)
    seconds = estimate_seconds(plans, forward_rate)
    estimate = "" if seconds is None else (f"; estimated at most {_duration(seconds)} in all (from the first "
                                           f"forward's {forward_rate:,.0f} sequences/s)")
    return (f"plan: {counted(examples, 'example')} x {counted(len(plans), 'method')}: {backward:,} forward+backward passes"
            + (f" (integrated gradients: {ig} steps each)" if ig else "")
            + (f", {forward:,} forward passes of attention methods" if forward else "")
            + f", up to {perturbed:,} forward passes of perturbed sequences (repeats are scored once); "
            f"batches of {config.batch_size} (attribution) and {config.eval_batch_size} (forward){estimate}")


@contextlib.contextmanager
def _method_progress(study: Study, method: str, position: str, plan: MethodPlan, show: bool):
    """A progress bar (with its ETA) over the passes of one method, fed by the study's ``advance``."""
    if not show:
        yield
        return
    from lrp_kernels.progress import progress_bar

    with progress_bar(total=plan.total, desc=f"evaluate {position} {method}", unit="pass", dynamic_ncols=True) as bar:
        study.advance = bar.update
        try:
            yield
            bar.update(plan.total - bar.n)  # the repeats that were already scored
        finally:
            study.advance = _ignore


def run_study(config: StudyConfig, log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Run the study; write the report to ``config.out``; return the summary (also summary.json).

    ``log`` receives the plan (the passes every method will take) before the first method runs.
    """
    from lrp_kernels.evaluation import report

    methods, metrics = _check(config)
    device = parse_device(config.device)
    started = time.perf_counter()
    study = Study(config, device)
    plans = {method: study.plan(method, metrics) for method in methods}
    if log is not None:
        log(describe_plan(plans, len(study.items), config, study.forward_rate))
    results: dict[str, Any] = {"methods": {}, "agreement": None, "cross_dataset": None}
    by_method: dict[str, list[Item]] = {}
    for i, method in enumerate(methods, start=1):
        with _method_progress(study, method, f"{i}/{len(methods)}", plans[method], config.progress):
            by_method[method], results["methods"][method] = study.method_row(method, metrics)
    if "agreement" in metrics and len(by_method) > 1:
        results["agreement"] = ranking.method_agreement(by_method)
    out = Path(config.out)
    summary = report.write_report(out, study.info(round(time.perf_counter() - started, 2)), results, by_method,
                                  id2label=study.model.config.id2label, heatmaps=config.heatmaps)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
