"""Relevance per layer (``layers=True``): one backward, conservation layer by layer, the absorbed
shares against independent computations."""

import copy

import pytest
import torch

import lrp_kernels
from lrp_kernels import InputError, attribute
from lrp_kernels.layer_relevance import KINDS
from lrp_kernels.rules import lrp_rules

transformers = pytest.importorskip("transformers")
from model_factory import CONFIGS, make_hf, padded, zero_biases  # noqa: E402

INIT = 0.2
ORDER = ["embedding_sum", "layer.0", "layer.1", "encoder_output"]
GRADIENT_METHODS = ["gradient", "grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp"]
#: |other| relative to the largest relevance an example's books hold (any point or the logit): each
#: point total is an fp32 sum of a few hundred x·g products (and a stage subtracts ~10 of them), so
#: rounding leaves ≲ 1e-5 of that scale (measured ≤ 3e-6 over every family and method below); an
#: op that the ledger misses leaves its whole share — the gated product under the plain rules left
#: 100 % of the logit here
OTHER_RTOL = 1e-4


def _batch(hf):
    ids, mask, _ = padded((9, 5, 7), pad_id=hf.config.get_text_config().pad_token_id)  # Gemma 3: its text config
    return ids, mask


def _zeroed(hf, linear=True, norm=True):
    """A copy with the linear layers' biases (``linear``) and the norms' β (``norm``) zeroed."""
    return zero_biases(copy.deepcopy(hf), linear, norm)


def _remaining(layers):
    """R(point k) + Σ_{j ≥ k} absorbed[j]: the explained logit at every point when the books balance."""
    after = layers.absorbed.sum(-1).flip(-1).cumsum(-1).flip(-1)
    return layers.totals + after


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_cp_lrp_without_biases_carries_the_whole_logit_through_every_layer(kind):
    hf = _zeroed(make_hf(kind, initializer_range=INIT))
    ids, mask = _batch(hf)
    layers = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, layers=True).layers
    assert list(layers.points) == ORDER
    logit = layers.logit[:, None].expand_as(layers.totals)
    torch.testing.assert_close(layers.totals, logit, rtol=1e-4, atol=1e-5)
    assert layers.absorbed.abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp", "lrp_epsilon", "grad_x_input"])
def test_layer_totals_plus_absorbed_shares_equal_the_logit(kind, method):
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, eps=1e-2, layers=True)
    layers = result.layers
    logit = result.target_logit[:, None].expand_as(layers.totals)
    torch.testing.assert_close(_remaining(layers), logit, rtol=1e-4, atol=1e-5)
    # per stage: input total = output total − absorbed within it, and every op is accounted for
    other = layers.absorbed[..., KINDS.index("other")]
    assert other.abs().max() < 1e-4 * result.target_logit.abs().max()
    assert layers.absorbed[..., KINDS.index("bias")].abs().amax(-1).min() > 1e-3  # biases do take a share


def _scale(result):
    """Per example: the largest |relevance| its books hold, at any point or the explained logit."""
    return torch.maximum(result.layers.totals.abs().amax(-1), result.target_logit.abs())


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_family_and_method_explains_every_stage_by_its_ops(kind, method):
    """``other`` ≈ 0 for every shipped family and gradient method (the docs say so): DeBERTa's
    relative positions (no relevance of the tokens in its table) and the gated MLP's product under
    the plain rules (x·g counts R(act(a)·b) in both factors: an ``activation`` op absorbing −R) are
    on the books; and they balance — R(point k) + Σ_{j ≥ k} absorbed = the explained logit."""
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, layers=True)
    layers, scale = result.layers, _scale(result)
    other = layers.absorbed[..., KINDS.index("other")].abs().amax(-1)
    assert (other <= OTHER_RTOL * scale).all(), f"|other|/scale {(other / scale).max():.3g}"
    logit = result.target_logit[:, None].expand_as(layers.totals)
    torch.testing.assert_close(_remaining(layers), logit, rtol=0, atol=OTHER_RTOL * float(scale.max()))
    assert layers.points[0] == "embedding_sum" and layers.points[-1] == "encoder_output"


@pytest.mark.parametrize("kind", ["modernbert", "eurobert"])
@pytest.mark.parametrize("method", ["grad_x_input", "lrp_epsilon"])
def test_the_gated_mlp_under_the_plain_rules_by_hand(kind, method):
    """u = act(a)·b under the plain gradient: x·g gives R(b) = R(u) and R(act(a)) = R(u), so the
    activation and the product together absorb R(u) − R(a) − R(b) = −R(a), a the activation's input:
    the ``activation`` column of every block against −Σ a·g_a of an independent run (no ledger)."""
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, layers=True)
    model = lrp_kernels.models.from_hf(hf)
    Pass = lrp_kernels.models.blocks.Pass
    inputs, original = [], Pass.activation

    def activation(self, x, fn):
        inputs.append(x)
        return original(self, x, fn)

    rules = lrp_kernels.methods.get_method(method).rules(1e-6)
    with torch.no_grad():
        e = model.embed(ids).requires_grad_(True)
    with torch.enable_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(Pass, "activation", activation)
        logits, _ = model.run(e, mask, rules)
        blocks = inputs[: hf.config.num_hidden_layers]  # then the head's activation, if any
        grads = torch.autograd.grad(logits.gather(1, result.target[:, None]).sum(), blocks)
    expected = torch.stack([-(a * g).flatten(1).sum(-1) for a, g in zip(blocks, grads)], dim=1)
    column = result.layers.absorbed[:, 1 : 1 + len(blocks), KINDS.index("activation")]
    assert expected.abs().min() > 1e-3  # a share worth checking
    torch.testing.assert_close(column, expected, rtol=1e-4, atol=1e-5 * float(_scale(result).max()))


def test_the_shares_are_where_the_rules_put_them():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    only_beta = _zeroed(hf, linear=True, norm=False)  # linear biases zeroed, LayerNorm β kept
    layers = attribute(only_beta, ids, mask, method="cp_lrp", eps=0.0, layers=True).layers
    share = layers.absorbed.sum(1)
    assert share[:, KINDS.index("bias")].abs().max() < 1e-6 and share[:, KINDS.index("norm")].abs().min() > 1e-3
    only_linear = _zeroed(hf, linear=False, norm=True)  # β zeroed, linear biases kept
    layers = attribute(only_linear, ids, mask, method="cp_lrp", eps=0.0, layers=True).layers
    share = layers.absorbed.sum(1)
    assert share[:, KINDS.index("norm")].abs().max() < 1e-6 and share[:, KINDS.index("bias")].abs().min() > 1e-3
    layers = attribute(hf, ids, mask, method="attnlrp", layers=True).layers
    assert layers.absorbed[:, 1:-1, KINDS.index("softmax")].abs().min() > 1e-4  # AttnLRP's softmax rule
    layers = attribute(hf, ids, mask, method="cp_lrp", layers=True).layers
    assert layers.absorbed[..., KINDS.index("softmax")].abs().max() < 1e-5


def test_the_head_bias_share_by_hand():
    """BERT's head at ε = 0: classifier bias b_c[target] + Σ_j b_p,j · g_z,j with g_z the identity
    rule through the pooler's tanh: g_z = (W_c[target]) ⊙ tanh(z)/z."""
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, layers=True)
    with torch.no_grad():
        cls = hf.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        z = hf.bert.pooler.dense(cls)
        g_z = hf.classifier.weight[result.target] * torch.tanh(z) / z
        expected = hf.classifier.bias[result.target] + (hf.bert.pooler.dense.bias * g_z).sum(-1)
    torch.testing.assert_close(result.layers.absorbed[:, -1, KINDS.index("bias")], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input"])
def test_layer_rows_equal_taps_without_the_ledger(method):
    """Each row against Σ x·g at a tap of a plain run (no ledger, GELU fused): an independent path."""
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, layers=True, target=[2, 0, 1])
    plain = attribute(hf, ids, mask, method=method, target=[2, 0, 1])
    torch.testing.assert_close(result.scores, plain.scores, rtol=1e-5, atol=1e-6)
    model = lrp_kernels.models.from_hf(hf)
    rules = lrp_kernels.methods.get_method(method).rules(1e-6)
    with torch.no_grad():
        e = model.embed(ids).requires_grad_(True)
    names = ORDER[1:]
    with torch.enable_grad():
        logits, p = model.run(e, mask, rules, taps=names)
        seed = logits[torch.arange(3), torch.tensor([2, 0, 1])].sum()
        grads = torch.autograd.grad(seed, [e] + [p.tapped[n] for n in names])
    for row, (x, g) in enumerate(zip([e] + [p.tapped[n] for n in names], grads)):
        torch.testing.assert_close(result.layers.relevance[:, row], (x * g).sum(-1) * mask, rtol=1e-4, atol=1e-6)


def test_layers_with_all_and_the_table():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    every = attribute(hf, ids, mask, method="cp_lrp", target="all", layers=True)
    assert every.layers.relevance.shape == (3, 3, 4, ids.shape[1])
    assert every.layers.absorbed.shape == (3, 3, 4, len(KINDS))
    one = attribute(hf, ids, mask, method="cp_lrp", target=1, layers=True)
    torch.testing.assert_close(every.layers.relevance[:, 1], one.layers.relevance, rtol=1e-5, atol=1e-6)
    rows = one.layers.table(0)
    assert [r["point"] for r in rows] == ORDER + ["logit"]
    assert rows[-1]["relevance"] == pytest.approx(float(one.target_logit[0]))
    assert (one.layers.relevance[1, :, 5:] == 0).all()  # padding


def test_layers_only_for_gradient_methods():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    for method in ("integrated_gradients", "lat", "random"):
        with pytest.raises(InputError, match="layers=True applies to gradient methods"):
            attribute(hf, ids, mask, method=method, layers=True)


def test_the_ledger_leaves_the_plain_forward_alone():
    """Without a ledger the pass records nothing and keeps the GELU fused."""
    model = lrp_kernels.models.from_hf(make_hf("bert"))
    ids, mask = _batch(make_hf("bert"))
    e = model.embed(ids)
    _, p = model.run(e, mask, lrp_rules("attnlrp"))
    assert p.ledger is None and p.tapped == {}


# ------------------------------------------------------------------------------------ the account
@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
def test_the_account_adds_up_and_its_softmax_share_is_the_ledgers(kind, method):
    """account=True: Σ scores + Σ shares = the explained logit; AttnLRP's softmax share (from a partial
    ledger of the attention ops alone) is what the full ledger's attention ops absorb, and the lumped
    rest is its biases plus norm shifts — CP-LRP's softmax rule absorbs nothing."""
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    cheap = attribute(hf, ids, mask, method=method, eps=1e-2, account=True)
    full = attribute(hf, ids, mask, method=method, eps=1e-2, layers=True)
    logit = cheap.target_logit
    scale = logit.abs().max()  # fp32 sums of a few hundred x·g products: ≲ 1e-5 of the logit
    torch.testing.assert_close(cheap.scores.sum(-1) + sum(cheap.shares.values()), logit, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(full.scores.sum(-1) + sum(full.shares.values()), logit, rtol=0, atol=1e-4 * scale)
    absorbed = full.layers.absorbed.sum(-2)
    by_kind = {k: absorbed[:, j] for j, k in enumerate(KINDS)}
    assert set(cheap.shares) == ({"softmax", "bias+norm"} if method == "attnlrp" else {"bias+norm"})
    if method == "attnlrp":
        torch.testing.assert_close(cheap.shares["softmax"], by_kind["softmax"], rtol=0, atol=1e-4 * scale)
        assert by_kind["softmax"].abs().min() > 1e-3 * scale  # a share worth showing
    else:
        assert by_kind["softmax"].abs().max() < 1e-4 * scale
    torch.testing.assert_close(cheap.shares["bias+norm"], by_kind["bias"] + by_kind["norm"], rtol=0,
                               atol=1e-4 * scale)
    torch.testing.assert_close(cheap.scores, full.scores, rtol=1e-4, atol=1e-6 * scale)
    assert cheap.account(0).startswith(f"Σ relevance {float(cheap.scores[0].sum()):.3g}".replace("-", "−"))


def test_the_account_of_integrated_gradients_is_completeness():
    """IG: Σ scores = logit(x) − logit(baseline) up to the Riemann sum's error; the baseline's logit is
    transformers' own on [PAD] words at the same positions."""
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method="integrated_gradients", ig_steps=64, account=True)
    pads = torch.full_like(ids, hf.config.pad_token_id)
    with torch.no_grad():
        base = hf(input_ids=pads, attention_mask=mask).logits.float()
    expected = base.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.shares["baseline"], expected, rtol=1e-4, atol=1e-5)
    assert (result.shares["steps"].abs() < 0.02 * result.target_logit.abs().max()).all()  # 64 midpoint steps


def test_gradient_methods_lump_their_remainder_and_unsigned_ones_have_no_account():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    for method in ("grad_x_input", "lrp_epsilon"):
        result = attribute(hf, ids, mask, method=method, account=True)
        assert set(result.shares) == {"rules"}
        torch.testing.assert_close(result.shares["rules"], result.target_logit - result.scores.sum(-1))
    for method in ("gradient", "lat", "random"):
        assert attribute(hf, ids, mask, method=method, account=True).shares is None


def test_the_layer_table_prints_and_keeps_its_rows():
    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    table = attribute(hf, ids, mask, method="attnlrp", layers=True).layers.table(1)
    assert isinstance(table, list) and table[0]["point"] == "embedding_sum" and table[-1]["point"] == "logit"
    text = str(table)
    assert repr(table) == text and text.splitlines()[0].split() == ["point", "Σ", "relevance", "then", "absorbed",
                                                                     "by", *KINDS]
    assert [line.split()[0] for line in text.splitlines()[2:2 + len(table)]] == ORDER + ["logit"]
    assert f"{table[1]['relevance']:.4g}" in text.splitlines()[3]
    assert "<table" in table._repr_html_() and "softmax</th>" in table._repr_html_()
