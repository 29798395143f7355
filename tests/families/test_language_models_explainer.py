"""Causal language models through the Explainer: the next token, a continuation, and a whole generation
(``explain_generation`` runs transformers' ``generate``, then explains every generated token from one
packed forward), on random small models of every decoder family with a byte-level BPE tokenizer trained
offline (``tests/decoder_checkpoints.py``); the HTML view, JSON, and bad input.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from lrp_kernels import Explainer, attribute
from lrp_kernels.errors import InputError

transformers = pytest.importorskip("transformers")
from decoder_checkpoints import TOKENIZERS, build_tokenizer  # noqa: E402
from model_factory import DECODERS, make_hf, make_lm  # noqa: E402

PROMPTS = ["the plot was thin and", "a gorgeous"]
#: the default run takes Llama; the other families are marked slow (``--all``)
KINDS = [k if k == "llama" else pytest.param(k, marks=pytest.mark.slow) for k in DECODERS]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("bytelevel")


def _ids(tok):
    eos = tok.token_to_id(TOKENIZERS["bytelevel"][3])
    return dict(vocab_size=tok.get_vocab_size(), pad_token_id=eos, eos_token_id=eos, bos_token_id=eos)


def _lm(kind, tok):
    transformers.logging.set_verbosity_error()
    return make_lm(kind, initializer_range=0.2, **_ids(tok))


def _left_padded(tok, prompts, pad):
    rows = [tok.encode(p).ids for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@pytest.mark.parametrize("kind", KINDS)
def test_generated_ids_equal_generate_and_rows_equal_separate_calls(kind, tokenizer):
    """The ids are generate's (greedy, a left-padded batch); the packed forward predicts them again (its
    argmax at every explained position); each row equals attribute() on the prompt + the tokens before it."""
    hf = _lm(kind, tokenizer)
    explainer = Explainer(hf, tokenizer)
    results = explainer.explain_generation(PROMPTS, max_new_tokens=5)
    ids, mask = _left_padded(tokenizer, PROMPTS, hf.config.get_text_config().pad_token_id)
    with torch.no_grad():
        expected = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                               pad_token_id=hf.config.get_text_config().pad_token_id)[:, ids.shape[1]:]
    eos = hf.config.get_text_config().eos_token_id
    for b, result in enumerate(results):
        row = expected[b].tolist()
        row = row[: row.index(eos) + 1] if eos in row else row
        assert result.generated == row and result.kind == "generation"
        assert [max(range(len(a)), key=lambda k: a[k][1]) for a in result.alternatives] == [0] * len(row)
        assert [a[0][0] for a in result.alternatives] == result.generated_tokens  # the argmax is the token
        prompt = tokenizer.encode(PROMPTS[b]).ids
        assert len(result.tokens) == len(prompt) + len(row) and result.prompt_length == len(prompt)
        for i, token in enumerate(row[:3]):
            prefix = torch.tensor([prompt + row[:i]])
            alone = attribute(hf, prefix, method="attnlrp", target=token).scores[0]
            got = torch.tensor(result.matrix[i])
            scale = max(float(alone.abs().max()), abs(result.logits[i]))  # float32, rel. to the row's scale
            assert (got[: len(prefix[0])] - alone).abs().max() <= 1e-5 * scale
            assert not got[len(prefix[0]) :].any() and result.positions[i] == len(prompt) + i


@pytest.mark.slow
def test_sampling_and_stop_strings_pass_through(tokenizer):
    hf = _lm("llama", tokenizer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                                   pad_token="<|endoftext|>")
    explainer = Explainer(hf, hf_tok)
    torch.manual_seed(5)
    sampled = explainer.explain_generation(PROMPTS[0], max_new_tokens=6, do_sample=True, top_k=20)[0]
    ids, mask = _left_padded(tokenizer, PROMPTS[:1], hf.config.pad_token_id)
    torch.manual_seed(5)
    with torch.no_grad():
        again = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=True, top_k=20,
                            pad_token_id=hf.config.pad_token_id)[0, ids.shape[1]:].tolist()
    assert sampled.generated == again[: len(sampled.generated)]
    greedy = explainer.explain_generation(PROMPTS[0], max_new_tokens=6)[0]
    texts = [tokenizer.decode([i]) for i in greedy.generated]  # a stop string: the first token that is a word
    k = next(k for k, text in enumerate(texts) if text.strip().isalpha())
    stopped = explainer.explain_generation(PROMPTS[0], max_new_tokens=6, stop_strings=[texts[k]])[0]
    assert stopped.generated == greedy.generated[: k + 1]


@pytest.mark.slow
def test_continuation_next_token_and_words(tokenizer):
    hf = _lm("gemma2", tokenizer)
    explainer = Explainer(hf, tokenizer, method="cp_lrp")
    cont = explainer.explain(PROMPTS, continuation=" boring film")
    prompt = tokenizer.encode(PROMPTS[0]).ids
    cont_ids = tokenizer.encode(" boring film", add_special_tokens=False).ids
    assert cont[0].generated == cont_ids and cont[0].kind == "continuation"
    assert cont[0].tokens == tokenizer.encode(PROMPTS[0]).tokens + tokenizer.encode(" boring film").tokens
    alone = attribute(hf, torch.tensor([prompt]), method="cp_lrp", target=cont_ids[0]).scores[0].tolist()
    assert cont[0].matrix[0][: len(prompt)] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert [sum(col) for col in zip(*cont[0].matrix)] == pytest.approx(cont[0].scores, rel=1e-5, abs=1e-6)
    words = explainer.explain(PROMPTS[0], continuation=" boring film", merge_subwords=True)[0]
    assert words.tokens[: words.prompt_length] == ["the", "plot", "was", "thin", "and"] and words.words
    assert words.generated_tokens == cont[0].generated_tokens  # the explained tokens stay tokens
    assert words.matrix[0][: words.prompt_length] == pytest.approx(
        cont[0].matrix[0][: cont[0].prompt_length], rel=1e-6, abs=1e-7)  # one token per word here
    # the next token: the prediction, or a token given as a one-token string, against a contrast
    nxt = explainer.explain(PROMPTS)
    with torch.no_grad():
        predicted = [int(hf(input_ids=torch.tensor([tokenizer.encode(p).ids])).logits[0, -1].argmax()) for p in PROMPTS]
    assert [e.generated for e in nxt] == [[p] for p in predicted] and nxt[0].kind == "next token"
    assert len(nxt[0].tokens) == len(prompt) + 1 and not any(row[-1] for row in nxt[0].matrix)
    given = explainer.explain(PROMPTS[0], target=" boring", contrast=" film")[0]
    assert given.generated == cont_ids[:1] and given.contrast == cont_ids[1] and given.contrast_token == "Ġfilm"
    a = attribute(hf, torch.tensor([prompt]), method="cp_lrp", target=cont_ids[0], contrast=cont_ids[1])
    assert given.matrix[0][: len(prompt)] == pytest.approx(a.scores[0].tolist(), rel=1e-5, abs=1e-6)
    assert given.explained[0] == pytest.approx(float(a.target_logit[0]), rel=1e-5)


def test_generation_html_and_json(tokenizer, tmp_path):
    hf = _lm("gpt2", tokenizer)
    explainer = Explainer(hf, tokenizer)
    results = explainer.explain_generation(["<script>alert(1)</script> the plot & the"], max_new_tokens=4,
                                           merge_subwords=True)
    page = results.save_html(tmp_path / "gen.html").read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;" in page and "&amp;" in page  # the words "<", "script", ">", "&"
    assert page.count('type="radio"') == len(results[0].generated) + 1  # one per token, and the sum
    assert "supports the chosen token" in page and "speaks against the chosen token" in page
    assert "explaining token 1 of 4" in page and "all explained tokens × context" in page
    # the account of each explained token, as every heatmap states it (issue 25), never a bare ratio
    assert "conservation" not in page
    assert re.search(r"Σ relevance \S+ = logit \S+ [−+] \S+ (absorbed by|from) ", page), page[:3000]
    assert results._repr_html_().startswith("<style>")
    record = json.loads(results.to_json().splitlines()[0])
    assert len(record["matrix"]) == len(record["generated"]) and len(record["matrix"][0]) == len(record["tokens"])
    assert record["kind"] == "generation" and record["method"] == "attnlrp" and record["words"]


def test_bad_input_is_refused(tokenizer):
    hf = _lm("llama", tokenizer)
    explainer = Explainer(hf, tokenizer)
    with pytest.raises(InputError, match="not one"):
        explainer.explain(PROMPTS[0], target=" boring film")
    with pytest.raises(InputError, match="target='all'"):
        explainer.explain(PROMPTS[0], target="all")
    with pytest.raises(InputError, match="stride does not apply"):
        explainer.explain(PROMPTS[0], stride=4)
    with pytest.raises(InputError, match="max_new_tokens"):
        explainer.explain_generation(PROMPTS[0], max_new_tokens=0)
    with pytest.raises(InputError, match="positions"):
        explainer.explain_generation(" ".join(["plot"] * 70), max_new_tokens=5)
    with pytest.raises(InputError, match="stop_strings needs the transformers tokenizer"):
        explainer.explain_generation(PROMPTS[0], max_new_tokens=2, stop_strings=["x"])
    with pytest.raises(InputError, match="unknown score"):
        explainer.explain(PROMPTS[0], score="prob")
    ours = Explainer(explainer.model, tokenizer)  # no transformers model: nothing to generate with
    with pytest.raises(InputError, match="generate"):
        ours.explain_generation(PROMPTS[0], max_new_tokens=2)
    classifier = Explainer(make_hf("llama", **_ids(tokenizer)), tokenizer)
    with pytest.raises(InputError, match="causal language model"):
        classifier.explain_generation(PROMPTS[0])
    with pytest.raises(InputError, match="continuation and score apply to causal language models"):
        classifier.explain(PROMPTS[0], continuation=" film")
