"""Evaluation metrics: word deletion, AOPC, ABPC, word rank, agreement, and the whole study.

The perturbation metrics are checked on a bag-of-words "model" (logit margin = Σ w[token]), whose
exact token contributions are known: that gives hand-computable AOPC/ABPC values and an oracle
attribution that must beat random ordering.
"""

import dataclasses
import csv
import json
import math
import random

import pytest
import torch

from lrp_kernels.evaluation import (
    Item,
    StudyConfig,
    abpc,
    aopc,
    deletion_subset,
    method_agreement,
    ranked_positions,
    run_study,
    spearman,
    word_deletion,
    word_rank,
)
from lrp_kernels.evaluation.ranking import rankdata, word_rank_correlation

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
VOCAB = 60


def bow_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(VOCAB, generator=g)
    w[:5] = 0.0  # specials and the replacement tokens carry nothing
    return w


class BagOfWords:
    """logits = [-s/2, s/2] with s = Σ_t w[id_t] over attended tokens; records every input batch."""

    def __init__(self, w):
        self.w = w
        self.calls = []

    def __call__(self, ids, mask, types):
        self.calls.append((ids.clone(), mask.clone()))
        s = (self.w[ids] * mask).sum(dim=1)
        return torch.stack([-s / 2, s / 2], dim=1)


def make_item(index, words, w, label=None, scores=None):
    ids = torch.tensor([CLS] + list(words) + [SEP])
    n = len(words)
    content = torch.tensor([False] + [True] * n + [False])
    logits = BagOfWords(w)(ids[None], torch.ones(1, n + 2, dtype=torch.long), torch.zeros(1, n + 2, dtype=torch.long))[0]
    pred = int(logits.argmax())
    return Item(
        index=index, ids=ids, types=torch.zeros_like(ids), content=content,
        tokens=["[CLS]"] + [f"w{i}" for i in words] + ["[SEP]"],
        word_ids=[None] + list(range(n)) + [None], sequence_ids=[None] + [0] * n + [None],
        text=" ".join(f"w{i}" for i in words), label=pred if label is None else label,
        scores=scores, logits=logits, target=pred, words=[""] + [f"w{i}" for i in words] + [""],
    )


def oracle_scores(item, w):
    """Each token's exact contribution to the margin of the explained class."""
    sign = 1.0 if item.target == 1 else -1.0
    s = sign * w[item.ids]
    return torch.where(item.content, s, torch.zeros(()))


def random_items(n, w, seed=0, min_len=3, max_len=25):
    rng = random.Random(seed)
    items = []
    for i in range(n):
        words = [rng.randrange(5, VOCAB) for _ in range(rng.randint(min_len, max_len))]
        item = make_item(i, words, w)
        if i % 7 == 3:  # a wrong gold label: not in the deletion subset
            item.label = 1 - item.target
        items.append(item)
    return items


def with_scores(items, kind, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for it in items:
        s = oracle_scores(it, w) if kind == "oracle" else torch.rand(it.ids.shape, generator=g)
        out.append(it.with_scores(s, it.logits, it.target))
    return out


def test_ranked_positions_skip_specials_and_break_ties_by_position():
    w = bow_weights()
    it = make_item(0, [5, 6, 7, 8], w, scores=torch.tensor([9.0, 1.0, 3.0, 1.0, 2.0, 9.0]))
    assert ranked_positions(it, most_first=True).tolist() == [2, 4, 1, 3]
    assert ranked_positions(it, most_first=False).tolist() == [1, 3, 4, 2]


def test_deletion_uses_the_right_subset_and_never_touches_specials():
    w = bow_weights()
    items = with_scores(random_items(80, w), "random", w)
    subset = deletion_subset(items, min_tokens=10)
    expected = [it.index for it in items if it.label == it.prediction and it.n_content >= 10]
    assert [it.index for it in subset] == expected
    assert 0 < len(expected) < len(items)  # both filters remove something
    assert any(it.label != it.prediction and it.n_content >= 10 for it in items)
    forward = BagOfWords(w)
    result = word_deletion(items, forward, replacement_id=MASK, pad_id=PAD, batch_size=64)
    assert result.indices == expected and result.n_examples == len(expected)
    replaced_counts = []
    for ids, mask in forward.calls:
        for row, m in zip(ids, mask):
            n = int(m.sum())
            assert row[0] == CLS and row[n - 1] == SEP  # specials untouched
            assert (row[n:] == PAD).all()  # padding untouched
            replaced_counts.append(int((row[1 : n - 1] == MASK).sum()))
    # every subset item appears once for each k = 1..10, with exactly k tokens replaced
    assert sorted(replaced_counts) == sorted(list(range(1, 11)) * len(expected))


def test_random_deletion_is_monotone_on_average_and_oracle_is_steeper():
    w = bow_weights(1)
    items = random_items(300, w, seed=1, min_len=10, max_len=30)
    forward = BagOfWords(w)
    curves = [word_deletion(with_scores(items, "random", w, seed=s), forward, PAD, PAD).values for s in range(5)]
    mean = [sum(c[k] for c in curves) / len(curves) for k in range(10)]
    assert all(b <= a + 0.01 for a, b in zip([1.0] + mean, mean)), mean  # non-increasing, up to noise
    assert mean[-1] < mean[0] - 0.02
    oracle = word_deletion(with_scores(items, "oracle", w), forward, PAD, PAD).values
    assert all(o <= r + 1e-9 for o, r in zip(oracle, mean)), (oracle, mean)
    assert oracle[-1] < mean[-1] - 0.2


def _p(s, target):
    logits = torch.tensor([-s / 2, s / 2])
    return float(torch.softmax(logits, dim=0)[target])


def test_aopc_by_hand():
    w = bow_weights()
    words = [5, 6, 7, 8]
    item = make_item(0, words, w)
    scores = torch.tensor([0.0, 0.4, -0.3, 0.9, 0.1, 0.0])  # content order by score: pos 3, 1, 4, 2
    item = item.with_scores(scores, item.logits, item.target)
    contrib = {1: w[5], 2: w[6], 3: w[7], 4: w[8]}
    ranked = [3, 1, 4, 2]
    total = sum(float(c) for c in contrib.values())
    p0 = _p(total, item.target)
    # n = 4: the bins 10..100 % give v = 0,0,1,1,2,2,2,3,3,4 -> v in {1, 2, 3, 4}, each once
    comp = [p0 - _p(total - sum(float(contrib[p]) for p in ranked[:v]), item.target) for v in (1, 2, 3, 4)]
    suff = [p0 - _p(sum(float(contrib[p]) for p in ranked[:v]), item.target) for v in (1, 2, 3, 4)]
    result = aopc([item], BagOfWords(w), pad_id=PAD)
    assert result.comprehensiveness == pytest.approx(sum(comp) / 4, abs=1e-6)
    assert result.sufficiency == pytest.approx(sum(suff) / 4, abs=1e-6)
    assert result.per_item_sufficiency[0] == pytest.approx(sum(suff) / 4, abs=1e-6)


def test_abpc_by_hand():
    w = bow_weights()
    words = [9, 10, 11, 12, 13]
    item = make_item(0, words, w)
    scores = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0, 0.0])  # most relevant first: 1, 3, 5, 4, 2
    item = item.with_scores(scores, item.logits, item.target)
    sign = 1.0 if item.target == 1 else -1.0
    contrib = {p: float(w[item.ids[p]]) for p in range(1, 6)}
    total = sum(contrib.values())
    most, least = [1, 3, 5, 4, 2], [2, 4, 5, 3, 1]
    ks = [j * 5 // 10 for j in range(11)]
    morf = [sign * (total - sum(contrib[p] for p in most[:k])) / 2 for k in ks]
    lerf = [sign * (total - sum(contrib[p] for p in least[:k])) / 2 for k in ks]
    gap = [b - a for a, b in zip(morf, lerf)]
    area = sum((gap[j] + gap[j + 1]) / 2 * 0.1 for j in range(10))
    result = abpc([item], BagOfWords(w), replacement_id=PAD, pad_id=PAD)
    assert result.fractions == pytest.approx([j / 10 for j in range(11)])
    assert result.morf == pytest.approx(morf, abs=1e-5)
    assert result.lerf == pytest.approx(lerf, abs=1e-5)
    assert result.abpc == pytest.approx(area, abs=1e-5)


def test_oracle_beats_random_on_aopc_and_abpc():
    w = bow_weights(2)
    items = random_items(150, w, seed=2)
    forward = BagOfWords(w)
    o_aopc, r_aopc = aopc(with_scores(items, "oracle", w), forward, PAD), aopc(with_scores(items, "random", w), forward, PAD)
    assert o_aopc.comprehensiveness > r_aopc.comprehensiveness + 0.05
    assert o_aopc.sufficiency < r_aopc.sufficiency - 0.05
    o_abpc, r_abpc = abpc(with_scores(items, "oracle", w), forward, PAD, PAD), abpc(with_scores(items, "random", w), forward, PAD, PAD)
    assert o_abpc.abpc > 0.5
    assert abs(r_abpc.abpc) < 0.25 * o_abpc.abpc  # a random order has no area in expectation


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 2, 3], [1, 2, 3, 4], 0.9486832980505138),  # ties take their average rank
        ([1, 1, 1], [1, 2, 3], float("nan")),  # constant: undefined
    ],
)
def test_spearman(a, b, expected):
    value = spearman(a, b)
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected)


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (2, 5, 17):
        a = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(n)]
        b = [rng.random() for _ in range(n)]
        assert rankdata(a).tolist() == stats.rankdata(a).tolist()
        expected = stats.spearmanr(a, b).statistic
        assert spearman(a, b) == pytest.approx(expected, nan_ok=True)


def test_word_rank_and_agreement():
    w = bow_weights()
    items = []
    for i in range(6):
        words = [20, 21, 22, 23] if i % 2 == 0 else [21, 20, 24]
        it = make_item(i, words, w)
        s = torch.zeros(it.ids.shape)
        for pos, tok in enumerate(it.ids.tolist()):
            s[pos] = {20: 2.0, 21: -1.0}.get(tok, 0.1)
        items.append(it.with_scores(s, it.logits, 1))
    ranked = word_rank(items, top=3, min_count=4)
    assert [r.word for r in ranked] == ["w20", "w21"]  # w22..w24 are seen 3 times: too rare
    assert ranked[0].score == pytest.approx(1.0) and ranked[0].count == 6
    assert ranked[1].score == pytest.approx(-0.5)
    negated = [it.with_scores(-it.scores, it.logits, it.target) for it in items]
    agreement = method_agreement({"a": items, "b": items, "c": negated})
    assert agreement[("a", "b")][0] == pytest.approx(1.0)
    assert agreement[("a", "c")][0] == pytest.approx(-1.0)
    assert agreement[("c", "a")] == agreement[("a", "c")]
    rho, shared = word_rank_correlation({(1, "x"): 1.0, (1, "y"): 2.0, (1, "z"): 3.0, (0, "q"): 1.0},
                                        {(1, "x"): 0.1, (1, "y"): 0.3, (1, "z"): 0.2})
    assert shared == 3 and rho == pytest.approx(0.5)


def test_word_rank_leaves_out_punctuation_and_stop_words_unless_kept():
    """Punctuation ('.', "'", '--') and stop words ('the', 's') top a small sample's list; by default
    they are left out (the rule: ranking.RANK_RULE), negations kept; keep_stop_words ranks them all."""
    from lrp_kernels.evaluation.ranking import RANK_RULE, is_ranked_word

    w = bow_weights()
    vocabulary = {20: ".", 21: "the", 22: "'", 23: "gorgeous", 24: "not", 25: "s", 26: "--", 27: "dull"}
    items = []
    for i in range(4):
        it = dataclasses.replace(make_item(i, list(vocabulary), w),
                                 words=[""] + [vocabulary[t] for t in vocabulary] + [""])
        s = torch.tensor([0.0] + [5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.9, -1.0] + [0.0])
        items.append(it.with_scores(s, it.logits, 1))
    default = [r.word for r in word_rank(items, top=10, min_count=1)]
    assert default == ["gorgeous", "not", "dull"]
    everything = [r.word for r in word_rank(items, top=10, min_count=1, keep_stop_words=True)]
    assert everything == [".", "the", "'", "gorgeous", "not", "s", "--", "dull"]
    assert word_rank(items, top=10, min_count=1)[0].score == pytest.approx(2.0 / 5.0)  # still scaled by '.'
    assert not any(map(is_ranked_word, ("n't", "n", "wo", "us"))) and is_ranked_word("never") and is_ranked_word("89")
    assert "punctuation" in RANK_RULE and "stop words" in RANK_RULE


# ------------------------------------------------------------------------------ the whole study
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cli_helpers import write_sst2_split
    from tiny_checkpoint import shared_tiny_checkpoint, tiny_sentences

    data = tmp_path_factory.mktemp("tiny") / "data"
    write_sst2_split(data / "dev.tsv", tiny_sentences(36, seed=3, min_words=4, max_words=18), random.Random(1))
    return shared_tiny_checkpoint(), data


def test_run_study_writes_every_table(tiny, tmp_path):
    from lrp_kernels.evaluation import make_items, model_forward
    from lrp_kernels.evaluation.study import load_model_and_encoder

    ckpt, data = tiny
    out = tmp_path / "report"
    methods = ("grad_x_input", "attnlrp", "random")
    summary = run_study(StudyConfig(model=str(ckpt), task="sst2", data_dir=str(data), out=str(out),
                                    methods=methods, progress=False, word_min_count=2))
    for name in ("summary.csv", "deletion.csv", "abpc_curves.csv", "word_rank.csv", "agreement.csv",
                 "deletion.png", "perturbation_curves.png", "agreement.png", "faithfulness.png", "report.md",
                 "index.html", "summary.json"):
        assert (out / name).is_file(), name
    assert list(summary["methods"]) == list(methods)
    assert json.loads((out / "summary.json").read_text())["examples"] == 36
    # the deletion subset, computed independently: correct predictions with >= 10 content tokens
    model, encoder = load_model_and_encoder(str(ckpt), torch.device("cpu"), 128)
    rows = list(csv.reader(open(data / "dev.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    items = make_items(encoder, [r[0] for r in rows], None, [int(r[1]) for r in rows])
    forward = model_forward(model)
    expected = sum(
        int(forward(it.ids[None], torch.ones_like(it.ids)[None], it.types[None]).argmax()) == it.label
        and it.n_content >= 10 for it in items)
    assert expected > 0
    for method in methods:
        assert summary["methods"][method]["deletion_n"] == expected
    with open(out / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == list(methods)
    assert all(-1.0 <= float(r["aopc_comprehensiveness"]) <= 1.0 for r in table)
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "<h2>Heatmaps</h2>" in page
    assert "pos&amp;amp" in page and "pos&amp<" not in page  # label names are escaped
    assert "neg<b>" not in page


def test_cross_dataset_with_the_same_model_is_perfect(tiny, tmp_path):
    ckpt, data = tiny
    summary = run_study(StudyConfig(model=str(ckpt), task="sst2", data_dir=str(data), out=str(tmp_path),
                                    methods=("grad_x_input", "rollout"), metrics=("abpc",), progress=False,
                                    model2=str(ckpt), task2="sst2", data_dir2=str(data), heatmaps=0))
    for method in ("grad_x_input", "rollout"):
        assert summary["methods"][method]["cross_model_rho"] == pytest.approx(1.0)
        assert summary["methods"][method]["cross_word_rho"] == pytest.approx(1.0)
    assert (tmp_path / "cross_dataset.csv").is_file()


def test_shared_cache_scores_each_sequence_once():
    from lrp_kernels.evaluation import batched_logits

    w = bow_weights()
    items = with_scores(random_items(20, w), "oracle", w)
    forward = BagOfWords(w)
    cache = {}
    first = abpc(items, forward, PAD, PAD, cache=cache)
    rows = sum(ids.shape[0] for ids, _ in forward.calls)
    assert rows == len(cache) > 0
    again = abpc(items, forward, PAD, PAD, cache=cache)  # every sequence is cached: no forward at all
    assert sum(ids.shape[0] for ids, _ in forward.calls) == rows
    assert again.abpc == first.abpc
    seq = (items[0].ids, items[0].types)
    fresh = BagOfWords(w)
    logits = batched_logits(fresh, [seq, seq, seq], PAD)
    assert len(fresh.calls) == 1 and fresh.calls[0][0].shape[0] == 1  # duplicates scored once
    assert torch.equal(logits[0], logits[2])


def test_the_plan_counts_in_words_and_estimates_the_total_time():
    """'1 example x 1 method' (not '1 methods'); the estimate: a forward+backward pass as
    BACKWARD_COST forwards, every perturbed sequence, at the first forward's speed."""
    from lrp_kernels.evaluation.study import BACKWARD_COST, MethodPlan, StudyConfig, describe_plan, estimate_seconds

    config = StudyConfig(model="m", task="sst2", out="o")
    plans = {"attnlrp": MethodPlan(backward=10, forward=0, perturbed=100)}
    plan = describe_plan(plans, 1, config, forward_rate=10.0)
    assert plan.startswith("plan: 1 example x 1 method: 10 forward+backward passes")
    assert estimate_seconds(plans, 10.0) == pytest.approx((BACKWARD_COST * 10 + 100) / 10.0)
    assert plan.endswith(f"estimated at most {estimate_seconds(plans, 10.0):.0f} s in all (from the first "
                         "forward's 10 sequences/s)")
    two = describe_plan({**plans, "lat": MethodPlan(0, 1, 100)}, 2, config)
    assert two.startswith("plan: 2 examples x 2 methods") and "estimated" not in two


def test_the_faithfulness_bars_say_what_they_measure(tmp_path, monkeypatch):
    """Every bar panel (AOPC comprehensiveness and sufficiency, ABPC) has a y-axis label."""
    import matplotlib.axes

    from lrp_kernels.evaluation import figures
    from lrp_kernels.evaluation.perturbation import ABPCResult, AOPCResult

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel",
                        lambda self, text, *a, **k: labels.append(text))
    aopc = AOPCResult(comprehensiveness=0.3, sufficiency=0.1, per_item_comprehensiveness=[0.3],
                      per_item_sufficiency=[0.1], n_examples=4)
    abpc = ABPCResult(fractions=[0.0, 1.0], morf=[1.0, 0.0], lerf=[1.0, 1.0], abpc=0.5, per_item=[0.5], n_examples=4)
    results = {"methods": {"attnlrp": {"aopc": aopc, "abpc": abpc}, "random": {"aopc": aopc, "abpc": abpc}}}
    assert figures.plot_faithfulness(tmp_path / "f.png", results) is not None
    assert labels == ["mean drop of p(target)", "mean drop of p(target)", "area (target logit × fraction replaced)"]
