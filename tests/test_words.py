"""Words for every tokenizer: WordPiece (``##``), byte-level BPE (``Ġ``) and SentencePiece (``▁``)
tokenizers built offline with ``tokenizers``; words come from character offsets, keep decomposed
accents, and are never empty."""

import pytest
import torch

from lrp_kernels.tokenization import merge_rows, word_index

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

CORPUS = ["the quick brown fox jumps over the lazy dog", "an unbelievably boring film, witty and gorgeous.",
          "été, café, naïve: don't stop"] * 20


def wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]",
                                                                                              "[SEP]"]))
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return tok


def byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok


def sentencepiece():
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=120, unk_token="<unk>",
                                                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok


KINDS = {"wordpiece": wordpiece, "byte_level_bpe": byte_level_bpe, "sentencepiece": sentencepiece}


@pytest.fixture(scope="module", params=sorted(KINDS))
def tok(request):
    return KINDS[request.param]()


def words(tok, text, pair=None):
    enc = tok.encode(text, pair) if pair else tok.encode(text)
    labels, special, index = word_index(enc.tokens, enc.offsets, enc.sequence_ids, [text, pair])
    return [w for w, s in zip(labels, special) if not s], enc, index


def test_words_are_the_texts_words(tok):
    got, enc, _ = words(tok, "the quickest foxes jumped lazily")
    assert got == ["the", "quickest", "foxes", "jumped", "lazily"]
    assert len(enc.tokens) > len(got) + 2  # the tokenizer did split words


def test_decomposed_accents_are_kept(tok):
    text = "e\u0301te\u0301 film"
    got, _, _ = words(tok, text)
    assert got == ["e\u0301te\u0301", "film"]


def test_leading_and_double_spaces_make_no_empty_word(tok):
    got, _, _ = words(tok, "  a  witty   film ")
    assert got == ["a", "witty", "film"]


def test_punctuation_stands_apart_and_pairs_keep_their_text(tok):
    got, _, _ = words(tok, "boring film, witty.", pair="don't stop")
    assert got[:5] == ["boring", "film", ",", "witty", "."]
    assert "".join(got[5:]) == "don'tstop" and got[-1] == "stop"


def test_scores_are_summed_into_words(tok):
    text = "an unbelievably  gorgeous film"
    _, enc, index = words(tok, text)
    scores = torch.arange(len(enc.tokens), dtype=torch.float64).tolist()
    merged = merge_rows(index, [scores])[0]
    assert sum(merged) == pytest.approx(sum(scores))
    assert len(merged) == max(index) + 1 == 4 + 2


def test_the_explainer_merges_words_of_a_byte_level_bpe_model():
    from lrp_kernels import Explainer
    from model_factory import make_hf

    pytest.importorskip("transformers")
    tok = byte_level_bpe()
    model = make_hf("roberta", vocab_size=tok.get_vocab_size(), max_position_embeddings=64)
    explainer = Explainer(model, tok, method="attnlrp")
    pieces = explainer.explain(" a  witty film")[0]
    merged = explainer.explain(" a  witty film", merge_subwords=True)[0]
    assert merged.tokens == ["<s>", "a", "witty", "film", "</s>"]
    assert sum(merged.scores) == pytest.approx(sum(pieces.scores), rel=1e-5, abs=1e-6)
