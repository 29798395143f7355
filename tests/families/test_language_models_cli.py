"""``lrp-kernels explain`` of a causal language model (``lrp_kernels/cli/_generate.py``) on a tiny saved
Llama LM with a Llama-3-style tokenizer (``tests/decoder_checkpoints.py``): ``--generate N`` gives the
ids ``generate`` gives and the Explainer's matrix, ``--continuation``, the next token, ``--html``,
``--output``; options that do not apply are one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest
import torch

from lrp_kernels import Explainer

transformers = pytest.importorskip("transformers")
from decoder_checkpoints import build_decoder_checkpoint  # noqa: E402

PROMPT = "the plot was thin and"


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return build_decoder_checkpoint("llama", "tiktoken", tmp_path_factory.mktemp("lm") / "model", language_model=True,
                                    initializer_range=0.2)


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_generate_gives_generates_ids_and_the_explainers_matrix(lm_dir, run_cli, tmp_path):
    html = tmp_path / "view.html"
    result = run_cli("explain", "--model", str(lm_dir), "--generate", "4", "--json", "--html", str(html), PROMPT)
    assert result.status == 0, result.err
    (line,) = _lines(result.out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(lm_dir)
    ids = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        expected = hf.generate(**ids, max_new_tokens=4, do_sample=False,
                               pad_token_id=hf.config.pad_token_id)[0, ids.input_ids.shape[1]:].tolist()
    eos = hf.config.eos_token_id
    expected = expected[: expected.index(eos) + 1] if eos in expected else expected
    assert line["id"] == 1 and line["kind"] == "generation" and line["generated"] == expected
    api = Explainer.from_pretrained(lm_dir).explain_generation(PROMPT, max_new_tokens=4, merge_subwords=True)[0]
    assert line["tokens"] == api.tokens and len(line["matrix"]) == len(expected)
    torch.testing.assert_close(torch.tensor(line["matrix"]), torch.tensor(api.matrix))  # the same computation
    page = html.read_text(encoding="utf-8")
    assert "wrote 1 explanation" in result.err and all(t.strip() in page for t in line["generated_tokens"][:1])


def test_continuation_and_next_token(lm_dir, run_cli, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli("explain", "--model", str(lm_dir), "--continuation", " slow", "--score", "logprob",
                     "--output", str(out), "--json", PROMPT, "a gorgeous")
    assert result.status == 0, result.err
    lines = _lines(out.read_text(encoding="utf-8"))
    assert lines == _lines(result.out) and [x["id"] for x in lines] == [1, 2]
    assert all(x["kind"] == "continuation" and x["score"] == "logprob" and x["generated_text"] == " slow"
               for x in lines)
    assert run_cli("explain", "--model", str(lm_dir), "--output", str(out), PROMPT).status == 2  # exists
    result = run_cli("explain", "--model", str(lm_dir), "--json", PROMPT)
    (line,) = _lines(result.out)
    assert line["kind"] == "next token" and len(line["matrix"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--generate", "0"], "--generate must be at least 1"),
    (["--generate", "3", "--continuation", "x"], "not both"),
    (["--generate", "3", "--target", "5"], "with --generate the generated tokens are the targets"),
    (["--layers"], "--layers applies to classifiers"),
    (["--stride", "4"], "--stride applies to classifiers"),
    (["--methods", "attnlrp,cp_lrp"], "one method per run"),
])
def test_bad_input_is_one_line(lm_dir, run_cli, args, message):
    run_cli("explain", "--model", str(lm_dir), *args, PROMPT).assert_user_error(message)


def test_language_model_options_on_a_classifier_are_one_line(run_cli):
    from tiny_checkpoint import shared_tiny_checkpoint

    run_cli("explain", "--model", str(shared_tiny_checkpoint()), "--generate", "3", "a text").assert_user_error(
        "--generate applies to causal language models")
