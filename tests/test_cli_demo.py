"""``lrp-kernels demo`` end to end with a tiny base model: fine-tune once, then cached; --model;
where SST-2 is found (user errors: test_cli_errors.py)."""

import random

import pytest

from cli_helpers import write_sst2_split
from lrp_kernels.cli import main
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo") / "sst2"
    rng = random.Random(0)
    for split, n, seed in (("train", 40, 1), ("dev", 16, 2)):
        write_sst2_split(data / f"{split}.tsv", tiny_sentences(n, seed=seed, min_words=4, max_words=16), rng)
    return shared_tiny_checkpoint(), data


def _args(ckpt, data, out):
    return ["demo", "--base", str(ckpt), "--data-dir", str(data), "--out", str(out), "--train-examples", "24",
            "--explain-examples", "2", "--eval-examples", "8", "--ig-steps", "2", "--methods",
            "attnlrp,lat,random", "--no-progress", "--device", "cpu"]


def test_demo_fine_tunes_once_then_uses_the_cache(setup, tmp_path, monkeypatch, capsys):
    ckpt, data = setup
    cache = tmp_path / "cache"
    monkeypatch.setenv("LRP_KERNELS_CACHE", str(cache))
    out = tmp_path / "report"
    assert main(_args(ckpt, data, out)) == 0
    captured = capsys.readouterr()
    assert f"demo report: {(out / 'index.html').resolve()}" in captured.out
    assert "fine-tuning" in captured.err
    trained = list(cache.glob("demo/*/metrics.json"))
    assert len(trained) == 1
    weights = trained[0].parent / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('class="lrpk-expl"') == 2 * 3  # 2 sentences x 3 methods
    assert "<h2>Evaluation</h2>" in page and "data:image/png;base64," in page
    assert "<th>acc@1 ↓</th>" in page and "<code>abpc ↑</code>: area between" in page  # every metric explained
    for name in ("explanations.jsonl", "heatmaps_attnlrp.png", "evaluation/index.html", "evaluation/summary.csv",
                 "evaluation/report.md"):
        assert (out / name).is_file(), name
    assert len((out / "explanations.jsonl").read_text().splitlines()) == 6

    assert main(_args(ckpt, data, out)) == 0
    captured = capsys.readouterr()
    assert "(cached)" in captured.err and "fine-tuning" not in captured.err
    assert weights.stat().st_mtime_ns == stamp


def test_demo_with_an_existing_model(setup, tmp_path, monkeypatch, capsys):
    ckpt, data = setup
    monkeypatch.setenv("LRP_KERNELS_CACHE", str(tmp_path / "cache"))
    args = _args(ckpt, data, tmp_path / "r") + ["--model", str(ckpt)]
    assert main(args) == 0
    assert "fine-tuning" not in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_sst2_from_the_flag_the_environment_or_the_package(tmp_path, monkeypatch):
    from lrp_kernels.cli.demo import SST2_ENV, find_sst2
    from lrp_kernels.data import bundled_sst2_dir

    found = tmp_path / "shared" / "data" / "sst2"
    other = tmp_path / "elsewhere"
    for directory in (found, other):
        directory.mkdir(parents=True)
        (directory / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    monkeypatch.delenv(SST2_ENV, raising=False)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_sst2(None) == bundled_sst2_dir()  # the package's copy; a shared/data/sst2 above is not looked for
    assert (find_sst2(None) / "train.tsv").is_file()
    monkeypatch.setenv(SST2_ENV, str(other))
    assert find_sst2(None) == other
    assert find_sst2(str(found)) == found  # the flag comes first


def test_sst2_not_found_names_the_flag(tmp_path, monkeypatch):
    from lrp_kernels.cli.demo import SST2_ENV, find_sst2
    from lrp_kernels.errors import InputError

    monkeypatch.setenv(SST2_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match=r"SST-2 not found: .* \(from \$LRP_KERNELS_SST2_DIR\) is missing; pass --data-dir DIR"):
        find_sst2(None)


@pytest.mark.filterwarnings("ignore:.*no trained classifier")
def test_demo_heatmaps_are_in_words_as_explain_gives_them(minilm_dir, tmp_path):
    import argparse
    import json
    from pathlib import Path

    from lrp_kernels.cli.demo import explain_sentences, write_explanations

    args = argparse.Namespace(explain_examples=1, backend=None, ig_steps=2)
    dev = {"text": ["unbelievably boring", "unused"], "label": [0, 1]}
    shown = explain_sentences(Path(minilm_dir), dev, ("attnlrp",), args, "cpu")
    write_explanations(shown, tmp_path)
    record = json.loads((tmp_path / "explanations.jsonl").read_text(encoding="utf-8"))
    assert record["id"] == 1 and record["tokens"] == ["[CLS]", "unbelievably", "boring", "[SEP]"]
