"""``lrp-kernels evaluate``: run the faithfulness and ranking studies for a set of methods.

:func:`run_study` loads a checkpoint and a labelled split, explains every example with every method
(the predicted class), runs the selected metrics and writes CSV tables, PNG plots, ``report.md`` and
``index.html`` to the output directory (see :mod:`lrp_kernels.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from lrp_kernels.attribution import METHODS
from lrp_kernels.errors import InputError
from lrp_kernels.evaluation import perturbation, ranking
from lrp_kernels.evaluation.items import Item, attribute_items, batched_logits, make_items, model_forward

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
    backend: str | None = None
    ig_steps: int = 32
    word_rank_top: int = 10
    word_min_count: int = 3
    heatmaps: int = 5
    model2: str | None = None
    task2: str | None = None
    data_dir2: str | None = None
    progress: bool = True
    title: str | None = None


def parse_list(value: str | None, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated list checked against ``valid`` (``all`` or empty: all of them)."""
    if value is None or value.strip() in ("", "all"):
        return valid
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if name not in valid:
            raise InputError(f"unknown {what} {name!r}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise InputError(f"a {what} is listed twice in {value!r}")
    return names


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    return torch.device(device)


def load_model_and_encoder(path: str, device: torch.device, max_length: int):
    """A :class:`~lrp_kernels.models.BertClassifier` in eval mode and its :class:`TextEncoder`."""
    from lrp_kernels.models.loading import load_pretrained
    from lrp_kernels.tokenization import TextEncoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = load_pretrained(path, device=device).eval()
    encoder = TextEncoder.from_pretrained(Path(path), max_length=max_length)
    encoder.max_length = min(encoder.max_length, model.config.max_tokens)
    return model, encoder


def load_examples(task: str, data_dir: str | None, split: str, max_examples: int | None, num_labels: int):
    """(texts, text_pairs or None, labels) of a labelled split, the first ``max_examples`` of it."""
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
    if max(labels) >= num_labels:
        raise InputError(f"task {task} has label {max(labels)} but the model has only {num_labels} labels")
    pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(dataset["text"]), pairs, labels


def _method_kwargs(config: StudyConfig) -> dict[str, Any]:
    return {"backend": config.backend, "ig_steps": config.ig_steps}


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Run the study; write the report to ``config.out``; return the summary (also summary.json)."""
    from lrp_kernels.evaluation import report

    metrics = tuple(config.metrics)
    for m in metrics:
        if m not in METRICS:
            raise InputError(f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
    for m in config.methods:
        if m not in METHODS:
            raise InputError(f"unknown method {m!r}; valid methods: {', '.join(METHODS)}")
    if not config.methods:
        raise InputError("no methods to evaluate")
    if config.min_tokens < 1:
        raise InputError("--min-tokens must be at least 1")
    if (config.task2 or config.data_dir2) and not config.model2:
        raise InputError("--task2/--data-dir2 need --model2")
    device = resolve_device(config.device)
    out = Path(config.out)
    started = time.perf_counter()

    model, encoder = load_model_and_encoder(config.model, device, config.max_length)
    replacement_id = perturbation.replacement_token_id(encoder, config.replacement)
    texts, pairs, labels = load_examples(config.task, config.data_dir, config.split, config.max_examples,
                                         model.config.num_labels)
    base_items = make_items(encoder, texts, pairs, labels)
    forward = model_forward(model)
    cache: dict[bytes, torch.Tensor] = {}  # logits of every sequence scored so far, across methods
    predictions = batched_logits(forward, [(it.ids, it.types) for it in base_items], encoder.pad_id,
                                 config.eval_batch_size, cache).argmax(dim=-1)
    accuracy = float(predictions.eq(torch.tensor(labels)).float().mean())

    second = None
    if config.model2:
        model2, encoder2 = load_model_and_encoder(config.model2, device, config.max_length)
        items2_on_a = make_items(encoder2, texts, pairs, labels)
        items2_on_b = None
        if config.task2:
            t2, p2, l2 = load_examples(config.task2, config.data_dir2, config.split, config.max_examples,
                                       model2.config.num_labels)
            items2_on_b = make_items(encoder2, t2, p2, l2)
        second = (model2, encoder2, items2_on_a, items2_on_b)

    results: dict[str, Any] = {"methods": {}, "agreement": None, "cross_dataset": None}
    by_method: dict[str, list[Item]] = {}
    methods = list(config.methods)
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(methods, desc="evaluate", unit="method")
    for method in methods:
        if bar is not None:
            bar.set_postfix_str(method)
        items, seconds = attribute_items(model, base_items, method, encoder.pad_id, config.batch_size,
                                         **_method_kwargs(config))
        by_method[method] = items
        row: dict[str, Any] = {"attribution_seconds": seconds}
        t0 = time.perf_counter()
        if "deletion" in metrics:
            row["deletion"] = perturbation.word_deletion(items, forward, replacement_id, encoder.pad_id,
                                                         min_tokens=config.min_tokens,
                                                         batch_size=config.eval_batch_size, cache=cache)
        if "aopc" in metrics:
            row["aopc"] = perturbation.aopc(items, forward, encoder.pad_id, batch_size=config.eval_batch_size,
                                            cache=cache)
        if "abpc" in metrics:
            row["abpc"] = perturbation.abpc(items, forward, replacement_id, encoder.pad_id,
                                            batch_size=config.eval_batch_size, cache=cache)
        if "word_rank" in metrics:
            row["word_rank"] = ranking.word_rank(items, top=config.word_rank_top, min_count=config.word_min_count)
        if second is not None:
            model2, encoder2, on_a, on_b = second
            items2, _ = attribute_items(model2, on_a, method, encoder2.pad_id, config.batch_size,
                                        **_method_kwargs(config))
            cross = {"per_example": ranking.cross_model_correlation(items, items2)}
            if on_b is not None:
                items2b, _ = attribute_items(model2, on_b, method, encoder2.pad_id, config.batch_size,
                                             **_method_kwargs(config))
                cross["word_rank"] = ranking.word_rank_correlation(
                    ranking.mean_word_scores(items, config.word_min_count),
                    ranking.mean_word_scores(items2b, config.word_min_count))
            row["cross_dataset"] = cross
        row["metric_seconds"] = time.perf_counter() - t0
        row["scored_sequences"] = len(cache)
        results["methods"][method] = row
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if "agreement" in metrics and len(by_method) > 1:
        results["agreement"] = ranking.method_agreement(by_method)

    info = {
        "model": str(config.model),
        "task": config.task,
        "split": config.split,
        "examples": len(base_items),
        "accuracy": accuracy,
        "replacement": config.replacement,
        "min_tokens": config.min_tokens,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "model2": config.model2,
        "task2": config.task2,
        "seconds": None,
        "title": config.title or f"lrp-kernels evaluation: {Path(config.model).name} on {config.task} {config.split}",
    }
    info["seconds"] = round(time.perf_counter() - started, 2)
    summary = report.write_report(out, info, results, by_method, id2label=model.config.id2label,
                                  heatmaps=config.heatmaps)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
