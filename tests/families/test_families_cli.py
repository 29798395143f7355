"""The command line on a tiny saved checkpoint of each family: ``python -m lrp_kernels.cli`` explain,
evaluate, bench and train run as a user runs them (a subprocess, this checkout on PYTHONPATH)."""

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from family_checkpoints import KINDS, build_family_checkpoint
from tiny_checkpoint import tiny_sentences

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # a Python process per command (~3 s of imports each)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny SST-2-style task directory (train.tsv, dev.tsv)."""
    root = tmp_path_factory.mktemp("sst2")
    rng = random.Random(2)
    for split, n, seed in (("train", 32, 5), ("dev", 12, 4)):
        rows = [f"{s}\t{rng.randint(0, 1)}" for s in tiny_sentences(n, seed=seed, min_words=4, max_words=12)]
        (root / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    return build_family_checkpoint(request.param, tmp_path_factory.mktemp(request.param) / "model")


def cli(*args, cwd):
    """Run ``python -m lrp_kernels.cli ARGS``; the completed process (stdout, stderr, returncode)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run([sys.executable, "-m", "lrp_kernels.cli", *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    return result


def test_explain(checkpoint, tmp_path):
    result = cli("explain", "--model", checkpoint, "--no-progress", "--target", "positive", "--merge-subwords",
                 "the films were dull", "a witty and moving story", cwd=tmp_path)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == [1, 2]  # positional texts count from 1, as file lines do
    assert [t for t, s in zip(records[0]["tokens"], records[0]["special"]) if not s] == ["the", "films", "were",
                                                                                         "dull"]
    for r in records:
        assert r["target_name"] == "positive" and r["method"] == "attnlrp"
        assert len(r["scores"]) == len(r["tokens"]) and torch.isfinite(torch.tensor(r["scores"])).all()


def test_evaluate(checkpoint, data, tmp_path):
    out = tmp_path / "report"
    cli("evaluate", "--model", checkpoint, "--task", "sst2", "--data-dir", data, "--out", out, "--no-progress",
        "--methods", "grad_x_input,attnlrp,cp_lrp,random", "--metrics", "deletion,aopc", "--min-tokens", "3",
        "--max-examples", "8", cwd=tmp_path)
    with open(out / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["grad_x_input", "attnlrp", "cp_lrp", "random"]
    assert (out / "index.html").is_file()


def test_bench(checkpoint, tmp_path):
    result = cli("bench", "--model", checkpoint, "--batch", "2", "--seq", "8", "--repeat", "1", "--warmup", "0",
                 "--threads", "1", "--no-memory", "--methods", "attnlrp,cp_lrp", cwd=tmp_path)
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.split()[:1]]
    assert {"forward", "gradient", "attnlrp", "cp_lrp"} <= set(rows)


def test_train_then_load(checkpoint, data, tmp_path):
    """train writes a checkpoint of the same family that transformers and lrp-kernels read alike."""
    out = tmp_path / "trained"
    result = cli("train", "--model", checkpoint, "--task", "sst2", "--data-dir", data, "--output-dir", out,
                 "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32", "--threads", "1", "--no-progress",
                 cwd=tmp_path)
    assert result.stdout.startswith(f"saved {out}: ")
    from lrp_kernels import Explainer

    explainer = Explainer.from_pretrained(out)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert explainer.model.config.model_type == hf.config.model_type
    batch = explainer.encoder.encode(["the films were dull", "a witty and moving story"])
    inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    with torch.no_grad():
        torch.testing.assert_close(explainer.model(batch.input_ids, batch.attention_mask, batch.token_type_ids),
                                   hf(**inputs).logits, atol=1e-5, rtol=0)
