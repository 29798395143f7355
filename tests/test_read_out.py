"""Read-out points: where each method takes x and g for score_t = Σ_h x_th · g_th.

The scale-invariance trap: LayerNorm is scale-invariant per token, so for any method that takes the
PLAIN gradient through the embedding norm, e_t · ∂f/∂e_t = 0 at its input for every token t. Those
methods (gradient, grad_x_input, lrp_epsilon) read after the norm; the LRP rules hold σ constant and
read at the embedding sum. Every method × read-out point is checked against an independent
computation: plain autograd on the unmodified ``transformers`` model (hooks make the read-out
tensor a leaf), and "scores are not ≈ 0 relative to the target logit" — the check the first
landing lacked.
"""

import pytest
import torch

from lrp_kernels import attribute
from lrp_kernels.methods import READ_OUT_POINTS, REGISTRY

transformers = pytest.importorskip("transformers")
from model_factory import hf_gradient_at, make_hf, padded  # noqa: E402

KINDS = ["bert", "roberta"]
# weights of std 0.2: with transformers' default 0.02 a random 2-layer model's logits are mostly its
# biases, and "signal relative to the logit" would measure the initialization, not the method
INIT = 0.2
GRADIENT_METHODS = [m for m in REGISTRY.values() if m.kind == "gradient"]


def _batch(hf):
    ids, mask, _ = padded((9, 5, 7), pad_id=hf.config.pad_token_id)
    return ids, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", READ_OUT_POINTS)
def test_gi_and_gs_equal_autograd_on_the_transformers_model(kind, point):
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    target = torch.tensor([2, 0, 1])
    x, grad = hf_gradient_at(hf, ids, mask, target, point)
    gi = attribute(hf, ids, mask, method="grad_x_input", target=target, read_at=point)
    gs = attribute(hf, ids, mask, method="gradient", target=target, read_at=point)
    torch.testing.assert_close(gi.scores, (x * grad).sum(-1) * mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs.scores, grad.norm(dim=-1) * mask, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_embedding_sum_is_the_scale_invariance_trap_for_plain_gradients(kind):
    """The independent computation that explains the bug: at the norm's INPUT, x·∂f/∂x of the
    transformers model itself is rounding noise per token, while after the norm it is not."""
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    target = torch.tensor([2, 0, 1])
    logit = hf(input_ids=ids, attention_mask=mask).logits[torch.arange(3), target].abs().detach()
    x, g = hf_gradient_at(hf, ids, mask, target, "embedding_sum")
    assert ((x * g).sum(-1).abs().amax(-1) < 1e-4 * logit).all()
    x, g = hf_gradient_at(hf, ids, mask, target, "embedding_output")
    assert ((x * g).sum(-1).abs().amax(-1) > 1e-2 * logit).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", [m.name for m in GRADIENT_METHODS])
def test_default_read_out_gives_signal(kind, method):
    """Every gradient method at its documented read-out point: per-token scores far above rounding
    noise relative to the target logit."""
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, target=torch.tensor([2, 0, 1]))
    assert result.read_at == REGISTRY[method].read_at
    scale = result.target_logit.abs()
    assert (result.scores.abs().amax(-1) > 1e-2 * scale).all(), result.scores


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", READ_OUT_POINTS)
@pytest.mark.parametrize("method", ["attnlrp", "cp_lrp"])
def test_lrp_methods_give_signal_at_every_read_out_point(kind, point, method):
    hf = make_hf(kind, initializer_range=INIT)
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method=method, read_at=point)
    assert (result.scores.abs().amax(-1) > 1e-2 * result.target_logit.abs()).all()


def test_cp_lrp_conserves_at_the_norm_output_too():
    """Without biases (norm β included) and ε = 0, the σ-constant norm passes all relevance, so
    cp_lrp sums to the logit at both sides of the embedding norm."""
    hf = make_hf("bert", initializer_range=INIT)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    ids, mask = _batch(hf)
    for point in ("embedding_sum", "embedding_output"):
        result = attribute(hf, ids, mask, method="cp_lrp", eps=0.0, read_at=point)
        torch.testing.assert_close(result.conservation, torch.ones(3), rtol=1e-4, atol=1e-4)


def test_read_at_is_checked():
    from lrp_kernels import InputError

    hf = make_hf("bert", initializer_range=INIT)
    ids, mask = _batch(hf)
    with pytest.raises(InputError, match="valid: embedding_sum, embedding_output, word_embeddings"):
        attribute(hf, ids, mask, method="attnlrp", read_at="pooler")
    with pytest.raises(InputError, match="read_at applies to gradient methods"):
        attribute(hf, ids, mask, method="rollout", read_at="embedding_sum")
