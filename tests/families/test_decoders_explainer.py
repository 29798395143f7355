"""Decoders through the Explainer and the command line, with the tokenizers decoders ship (built offline
in ``tests/decoder_checkpoints.py``): tiktoken-style byte-level BPE (Llama 3), SentencePiece-style BPE
(Gemma) and GPT-2's byte-level BPE. Words, long documents, conversations (reward models: the chat
template, messages, the reward shown), a model without a pad id, and ``lrp-kernels explain``.
"""

from __future__ import annotations

import json

import pytest
import torch

from lrp_kernels import Explainer, attribute
from lrp_kernels.cli import main
from lrp_kernels.errors import InputError

transformers = pytest.importorskip("transformers")
from decoder_checkpoints import TOKENIZERS, build_decoder_checkpoint  # noqa: E402

#: (family, tokenizer kind) of the checkpoints explained here
CASES = [("llama", "tiktoken"), ("gemma2", "sentencepiece"), ("gpt2", "bytelevel"), ("qwen3", "tiktoken")]
TEXTS = ["unbelievably boring film", "a gorgeous witty movie about the plot"]
CONVERSATION = [{"role": "user", "content": "is this film any good ?"},
                {"role": "assistant", "content": "yes , it is gorgeous"}]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def get(kind, tokenizer, num_labels=2, **config):
        key = (kind, tokenizer, num_labels, tuple(sorted(config.items())))
        if key not in made:
            directory = tmp_path_factory.mktemp(f"{kind}-{tokenizer}")
            made[key] = build_decoder_checkpoint(kind, tokenizer, directory, num_labels=num_labels, **config)
        return made[key]

    return get


def _hf_pair(directory):
    transformers.logging.set_verbosity_error()
    return (transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval(),
            transformers.AutoTokenizer.from_pretrained(directory))


@pytest.mark.parametrize("kind, tokenizer", CASES)
def test_words_and_pieces_with_the_family_tokenizer(checkpoints, kind, tokenizer):
    """Pieces begin with the tokenizer's BOS (none for GPT-2); words are the text's; a word's score is
    the sum of its pieces'; from_pretrained and (transformers model, tokenizer) explain alike, and both
    equal attribute() on transformers' own padded batch."""
    directory = checkpoints(kind, tokenizer)
    bos = TOKENIZERS[tokenizer][1]
    loaded = Explainer.from_pretrained(directory)
    hf, tok = _hf_pair(directory)
    pieces, words = loaded.explain(TEXTS), loaded.explain(TEXTS, merge_subwords=True)
    held = Explainer(hf, tok).explain(TEXTS)
    for text, piece, word, other in zip(TEXTS, pieces, words, held):
        assert (piece.tokens[0] == bos) if bos else piece.tokens[0] != "<|endoftext|>"
        assert [t for t, s in zip(word.tokens, word.special) if not s] == text.split()
        assert sum(word.scores) == pytest.approx(sum(piece.scores), rel=1e-5, abs=1e-7)
        assert other.tokens == piece.tokens
        torch.testing.assert_close(torch.tensor(other.scores), torch.tensor(piece.scores), rtol=1e-5, atol=1e-6)
    batch = tok(TEXTS, return_tensors="pt", padding=True)  # the tokenizer's own padding (right)
    direct = attribute(hf, batch["input_ids"], batch["attention_mask"])
    for row, piece in enumerate(pieces):
        n = len(piece.scores)
        torch.testing.assert_close(direct.scores[row, :n], torch.tensor(piece.scores), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, tokenizer", [("llama", "tiktoken"), ("gpt2", "bytelevel")])
def test_long_documents_in_windows(checkpoints, kind, tokenizer):
    """A text longer than max_length: windows, each a fresh input of the tokenizer (a BOS first where it
    adds one), every token scored once, finite."""
    explainer = Explainer.from_pretrained(checkpoints(kind, tokenizer), max_length=16)
    text = " ".join(["a gorgeous witty movie about the plot ."] * 6)
    result = explainer.explain(text, stride=4)[0]
    doc = explainer.encoder.documents([text], None, 4)[0]
    assert result.windows == len(doc.windows) > 2
    bos = TOKENIZERS[tokenizer][1]
    assert all((w.tokens[0] == bos) == bool(bos) for w in doc.windows)
    assert len(result.scores) == len(doc.full.ids) and torch.isfinite(torch.tensor(result.scores)).all()


@pytest.mark.parametrize("kind, tokenizer", [("llama", "tiktoken"), ("gemma2", "sentencepiece")])
def test_a_reward_model_explains_a_conversation(checkpoints, kind, tokenizer, tmp_path):
    """messages=…: the chat template's rendering, tokenized as transformers' apply_chat_template does;
    the tokens grouped by message (the template's special tokens marked special); one label: the reward
    (the logit) is what is explained and what the HTML shows."""
    directory = checkpoints(kind, tokenizer, num_labels=1)
    hf, tok = _hf_pair(directory)
    explainer = Explainer(hf, tok)
    result = explainer.explain(messages=CONVERSATION)[0]
    expected_ids = tok.apply_chat_template(CONVERSATION, tokenize=True)
    expected_ids = expected_ids["input_ids"] if not isinstance(expected_ids, list) else expected_ids
    assert tok.convert_tokens_to_ids(result.tokens) == list(expected_ids)
    with torch.no_grad():
        reward = hf(input_ids=torch.tensor([expected_ids])).logits[0, 0]
    assert result.target_logit == pytest.approx(float(reward), abs=1e-5)
    assert [m["role"] for m in result.messages] == ["user", "assistant"]
    assert result.messages[0]["start"] == 0 and result.messages[-1]["end"] == len(result.tokens)
    assert result.messages[0]["end"] == result.messages[1]["start"]
    first = result.tokens[result.messages[1]["start"]]  # the assistant's turn starts with its header
    assert first in ("<|start_header_id|>", "<start_of_turn>")
    specials = {t for t, s in zip(result.tokens, result.special) if s}
    assert first in specials and "is" not in specials
    words = explainer.explain(messages=[CONVERSATION, CONVERSATION[:1]], merge_subwords=True)
    assert sum(words[0].scores) == pytest.approx(sum(result.scores), rel=1e-5, abs=1e-7)
    assert [m["role"] for m in words[1].messages] == ["user"]
    page = words.save_html(tmp_path / "reward.html").read_text(encoding="utf-8")
    assert "reward" in page and "assistant" in page and "(p = " not in page
    assert json.loads(words.to_json().splitlines()[0])["messages"] == words[0].messages
    loaded = Explainer.from_pretrained(directory).explain(messages=CONVERSATION)[0]  # the template from the files
    assert loaded.tokens == result.tokens
    torch.testing.assert_close(torch.tensor(loaded.scores), torch.tensor(result.scores), rtol=1e-5, atol=1e-6)


def test_conversations_are_refused_without_a_template_or_with_texts(checkpoints):
    explainer = Explainer.from_pretrained(checkpoints("gpt2", "bytelevel"))
    with pytest.raises(InputError, match="no chat template"):
        explainer.explain(messages=CONVERSATION)
    llama = Explainer.from_pretrained(checkpoints("llama", "tiktoken"))
    with pytest.raises(InputError, match="not both"):
        llama.explain(TEXTS, messages=CONVERSATION)
    with pytest.raises(InputError, match="role"):
        llama.explain(messages=[{"content": "no role"}])
    with pytest.raises(InputError, match="not truncated"):
        llama.explain(messages=[{"role": "user", "content": " ".join(["gorgeous"] * 80)}])


def test_a_model_without_a_pad_id_is_explained_one_text_at_a_time(checkpoints):
    """No pad id: transformers refuses batches of several rows, so the Explainer runs one text per batch
    (and attribute() on a padded batch gives transformers' refusal)."""
    directory = checkpoints("qwen2", "tiktoken", pad_token_id=None)
    explainer = Explainer.from_pretrained(directory)
    hf, tok = _hf_pair(directory)
    results = explainer.explain(TEXTS + ["it is what it is"])
    for text, result in zip(TEXTS, results):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            torch.testing.assert_close(torch.tensor(result.logits), hf(input_ids=ids).logits[0], atol=1e-5, rtol=0)
    batch = explainer.encoder.encode(TEXTS)
    with pytest.raises(InputError, match="Cannot handle batch sizes > 1"):
        attribute(explainer.model, batch.input_ids, batch.attention_mask)


@pytest.mark.parametrize("kind, tokenizer", [("llama", "tiktoken"), ("gpt2", "bytelevel")])
def test_cli_explain(checkpoints, kind, tokenizer, capsys):
    directory = checkpoints(kind, tokenizer)
    assert main(["explain", "--model", str(directory), "--no-progress", "--target", "positive", *TEXTS]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[t for t, s in zip(r["tokens"], r["special"]) if not s] for r in records] == [t.split() for t in TEXTS]
    assert all(r["target_name"] == "positive" for r in records)
