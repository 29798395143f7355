"""The command line on tiny decoder checkpoints (``tests/decoder_checkpoints.py``): evaluate, bench, and
train — whose output transformers and lrp-kernels read alike, with the pad id written into the config
when the checkpoint had none. (``explain``: ``test_decoders_explainer.py``.)"""

import csv
import json
import random

import pytest
import torch

from lrp_kernels.cli import main
from tiny_checkpoint import tiny_sentences

transformers = pytest.importorskip("transformers")
from decoder_checkpoints import build_decoder_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow  # evaluate and train: several seconds each


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny SST-2-style task directory (train.tsv, dev.tsv)."""
    root = tmp_path_factory.mktemp("sst2")
    rng = random.Random(2)
    for split, n, seed in (("train", 24, 5), ("dev", 8, 4)):
        rows = [f"{s}\t{rng.randint(0, 1)}" for s in tiny_sentences(n, seed=seed, min_words=4, max_words=10)]
        (root / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=[("llama", "tiktoken", {}), ("gpt2", "bytelevel", {}),
                                        ("qwen2", "tiktoken", {"pad_token_id": None})],
                ids=["llama", "gpt2", "qwen2-without-pad"])
def checkpoint(request, tmp_path_factory):
    kind, tokenizer, config = request.param
    return build_decoder_checkpoint(kind, tokenizer, tmp_path_factory.mktemp(kind) / "model", **config)


def test_evaluate(checkpoint, data, tmp_path, capsys):
    out = tmp_path / "report"
    status = main(["evaluate", "--model", str(checkpoint), "--task", "sst2", "--data-dir", str(data), "--out",
                   str(out), "--no-progress", "--methods", "grad_x_input,attnlrp,cp_lrp,rollout",
                   "--metrics", "deletion,aopc", "--min-tokens", "3", "--max-examples", "6"])
    assert status == 0
    assert "replacing the last words by the pad id" in capsys.readouterr().err  # deletion's default replacement
    with open(out / "summary.csv", encoding="utf-8") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["grad_x_input", "attnlrp", "cp_lrp", "rollout"]


def test_bench(checkpoint, tmp_path, capsys):
    args = ["bench", "--model", str(checkpoint), "--seq", "8", "--repeat", "1", "--warmup", "0", "--threads", "1",
            "--no-memory", "--methods", "attnlrp,cp_lrp"]
    if json.loads((checkpoint / "config.json").read_text()).get("pad_token_id") is None:
        assert main([*args, "--batch", "2"]) == 2  # transformers' refusal, one line
        assert "Cannot handle batch sizes > 1" in capsys.readouterr().err
    assert main([*args, "--batch", "1"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.split()[:1]]
    assert {"forward", "gradient", "attnlrp", "cp_lrp"} <= set(rows)


def test_train_then_load(checkpoint, data, tmp_path, capsys):
    out = tmp_path / "trained"
    assert main(["train", "--model", str(checkpoint), "--task", "sst2", "--data-dir", str(data), "--output-dir",
                 str(out), "--epochs", "1", "--batch-size", "8", "--max-seq-length", "24", "--threads", "1",
                 "--no-progress"]) == 0
    from lrp_kernels import Explainer

    config = json.loads((out / "config.json").read_text())
    assert config["pad_token_id"] is not None  # written when the checkpoint had none
    explainer = Explainer.from_pretrained(out)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = explainer.encoder.encode(["the films were dull", "a witty and moving story"])
    with torch.no_grad():
        torch.testing.assert_close(explainer.model(batch.input_ids, batch.attention_mask),
                                   hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                   atol=1e-5, rtol=0)
