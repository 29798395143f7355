"""Causal language models of every decoder family against ``transformers`` itself, on seeded random small
models (2 layers, hidden 32; biases and norms perturbed; Gemma 2's final soft-cap 5): the next-token
logits (left and right padding, positions counted as ``generate`` counts them), checkpoints (tied
embeddings stay one tensor), GS/GI of the next-token logit against plain autograd on the transformers
LM, and the packed explanation of several next tokens (``attribute_tokens``): each row of the matrix
equals a separate ``attribute`` call on its prefix, is exactly 0 at and after its own position, and
CP-LRP with zero biases and ε = 0 conserves each row's logit; contrasts, log-probabilities, padding.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lrp_kernels import attribute
from lrp_kernels.errors import CheckpointError, InputError
from lrp_kernels.methods import METHODS
from lrp_kernels.models import from_hf, load_pretrained
from lrp_kernels.models.decoder import DecoderLM
from lrp_kernels.token_attribution import attribute_tokens, continuation_targets

transformers = pytest.importorskip("transformers")
from model_factory import DECODERS, make_lm, reload_strictly, zero_biases  # noqa: E402

pytestmark = pytest.mark.family

#: every decoder family; the default run takes Llama (rotary, grouped K/V) and GPT-2 (learned positions,
#: Conv1D, tied head), the others are marked slow (the floor run, ``-m family``, and ``--all`` take them)
KINDS = [k if k in ("llama", "gpt2") else pytest.param(k, marks=pytest.mark.slow) for k in DECODERS]
INIT = 0.2  # weights of std 0.2: logits that are not just the biases
TIED = {"gemma2", "gemma3_text", "gemma3", "gpt2"}


def _lm(kind, **extra):
    transformers.logging.set_verbosity_error()
    return make_lm(kind, initializer_range=INIT, **extra)


def _left():
    """Two prompts of 9 and 5 tokens, left-padded (as generate takes a batch)."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 100, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ids[mask == 0] = 0
    return ids, mask


def _right():
    """The same rows as :func:`_left`, right-padded."""
    ids, mask = _left()
    out_ids, out_mask = torch.zeros_like(ids), torch.zeros_like(mask)
    for row, n in enumerate(mask.sum(-1).tolist()):
        out_ids[row, :n], out_mask[row, :n] = ids[row, -n:], 1
    return out_ids, out_mask


BATCHES = {"left": _left, "right": _right}


def generate_positions(mask):
    """The position ids transformers' generate gives a padded batch (the mask's cumulative sum − 1, pads 0)."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _last(ids, mask):
    return mask.shape[1] - 1 - mask.flip(-1).argmax(-1)


def _hf_next_logits(hf, ids, mask):
    with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=mask, position_ids=generate_positions(mask)).logits
    return logits[torch.arange(len(ids)), _last(ids, mask)]


# ----------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("padding", list(BATCHES))
def test_next_token_logits_equal_transformers(kind, padding):
    hf = _lm(kind)
    ids, mask = BATCHES[padding]()
    ours = from_hf(hf)
    assert isinstance(ours, DecoderLM) and ours.config.num_labels == hf.config.get_text_config().vocab_size
    with torch.no_grad():
        # float32 through 2 layers, eager vs fused attention: a few ulp of |logits| ~ 2
        torch.testing.assert_close(ours(ids, mask), _hf_next_logits(hf, ids, mask), atol=1e-5, rtol=0)
    assert (ours.lm_head.weight is ours.word_embeddings.weight) == (kind in TIED)
    assert ours.lm_head.weight is hf.get_output_embeddings().weight  # shared, not copied


@pytest.mark.parametrize("kind", KINDS)
def test_load_pretrained_round_trip_ties_the_embeddings(tmp_path, kind):
    hf = _lm(kind)
    model = reload_strictly(hf, tmp_path)  # nothing missing, nothing unused
    assert isinstance(model, DecoderLM)
    assert (model.lm_head.weight is model.word_embeddings.weight) == (kind in TIED)
    ids, mask = _left()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), _hf_next_logits(hf, ids, mask), atol=1e-5, rtol=0)


def test_a_classifier_family_without_a_language_model_and_wrong_heads_are_refused(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20, is_decoder=True)
    transformers.BertLMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no causal language model of BERT"):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="num_labels applies to a classifier"):
        from lrp_kernels.models import config_from_dict

        config_from_dict({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, num_labels=2)


def test_the_gemma_2_final_soft_cap_is_applied_by_the_language_model_only():
    hf = _lm("gemma2")
    ids, mask = _right()
    with torch.no_grad():
        raw = hf.model(input_ids=ids, attention_mask=mask, position_ids=generate_positions(mask)).last_hidden_state
        uncapped = hf.lm_head(raw[torch.arange(2), _last(ids, mask)])
    capped = from_hf(hf)(ids, mask)
    assert capped.abs().max() < 5.0 < uncapped.abs().max() * 1.5 and (capped - uncapped).abs().max() > 1e-2
    torch.testing.assert_close(capped, 5.0 * torch.tanh(uncapped / 5.0), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------- one next token
@pytest.mark.parametrize("kind", KINDS)
def test_gi_and_gs_of_the_next_token_equal_autograd_on_the_transformers_lm(kind):
    """At the first block's input e (a pre-hook makes it a leaf of transformers' own graph), left padding."""
    hf = _lm(kind)
    ids, mask = _left()
    store = {}

    def leaf(_module, args, kwargs):
        store["e"] = args[0].detach().requires_grad_(True)
        return (store["e"], *args[1:]), kwargs

    base = getattr(hf.base_model, "language_model", hf.base_model)
    first = (base.layers if hasattr(base, "layers") else base.h)[0]
    handle = first.register_forward_pre_hook(leaf, with_kwargs=True)
    try:
        logits = hf(input_ids=ids, attention_mask=mask, position_ids=generate_positions(mask)).logits
    finally:
        handle.remove()
    read = logits[torch.arange(2), _last(ids, mask)]
    target = read.argmax(-1)
    (grad,) = torch.autograd.grad(read.gather(1, target[:, None]).sum(), store["e"])
    gi = attribute(hf, ids, mask, method="grad_x_input")
    gs = attribute(hf, ids, mask, method="gradient")
    assert gi.target.tolist() == target.tolist()  # the default target: the predicted next token
    # float32 gradients of two implementations (fused vs eager attention): relative 1e-4
    torch.testing.assert_close(gi.scores, (store["e"] * grad).sum(-1).detach() * mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs.scores, grad.norm(dim=-1) * mask, rtol=1e-4, atol=1e-5)
    assert gi.scores.abs().max() > 1e-2


@pytest.mark.parametrize("kind", ["llama", pytest.param("gemma2", marks=pytest.mark.slow),
                                  pytest.param("gpt2", marks=pytest.mark.slow)])
def test_contrast_equals_the_difference_of_two_calls(kind):
    hf = _lm(kind)
    ids, mask = _left()
    for method in ("attnlrp", "grad_x_input", "integrated_gradients"):
        both = attribute(hf, ids, mask, method=method, target=7, contrast=11, ig_steps=4)
        a = attribute(hf, ids, mask, method=method, target=7, ig_steps=4)
        b = attribute(hf, ids, mask, method=method, target=11, ig_steps=4)
        scale = a.scores.abs().max()
        # one backward of the seed difference vs two: float32 sums in another order, relative 1e-5
        torch.testing.assert_close(both.scores, a.scores - b.scores, rtol=0, atol=1e-5 * scale)
        torch.testing.assert_close(both.target_logit, a.target_logit - b.target_logit)


def test_target_all_over_a_vocabulary_is_refused():
    hf = _lm("llama")
    ids, mask = _left()
    with pytest.raises(InputError, match="target='all'"):
        attribute(hf, ids, mask, target="all")


# ----------------------------------------------------------------------------------- several next tokens
def _separate(hf, result, m, method, dtype=None, **kw):
    """``attribute`` on the prefix that ends at target m's position, target = its token."""
    b, t = int(result.rows[m]), int(result.positions[m])
    ids, mask = result.input_ids, result.attention_mask
    return attribute(hf, ids[b : b + 1, : t + 1], mask[b : b + 1, : t + 1], method=method,
                     target=int(result.target[m]), **kw).scores[0]


def _continuation():
    """Two left-padded rows whose last 5 (resp. 4) tokens are the explained continuation."""
    ids, mask = _left()
    return ids, mask, continuation_targets(ids, mask, torch.tensor([4, 5]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["attnlrp", pytest.param("cp_lrp", marks=pytest.mark.slow)])
def test_each_matrix_row_equals_a_separate_call_on_its_prefix(kind, method):
    """One forward, one backward per target rank vs one attribute call per prefix: float32, two sequence
    lengths (other GEMM blockings) — within 1e-5 relative to the row's scale: its largest score or the
    largest |logit| at its position, whichever is larger (float32 rounds relative to the magnitudes the
    forward carries; a row whose relevance the biases mostly absorbed is small, its rounding is not);
    exactly 0 at and after the target's own position (the logit never saw those tokens)."""
    hf = _lm(kind)
    ids, mask, targets = _continuation()
    result = attribute_tokens(hf, ids, mask, targets, method=method)
    assert len(result.rows) == 9 and result.matrix.shape == (9, ids.shape[1])
    for m in range(len(result.rows)):
        t = int(result.positions[m])
        alone = _separate(hf, result, m, method)
        scale = max(float(alone.abs().max()), float(result.logits[m].abs().max()))
        assert (result.matrix[m, : t + 1] - alone).abs().max() <= 1e-5 * scale
        assert not result.matrix[m, t + 1 :].any()
    # the per-row scores explain the sum of the row's targets: the sum of its rows
    for b in range(2):
        torch.testing.assert_close(result.scores[b], result.matrix[result.rows == b].sum(0))


@pytest.mark.parametrize("method", [m if m in ("attnlrp", "cp_lrp") else
                                    pytest.param(m, marks=pytest.mark.slow) for m in METHODS if m != "random"])
def test_every_method_packed_equals_separate_calls_in_float64(method):
    """Every method: in float64, where only a semantic difference could show (IG: 4 steps; the attention
    methods trace from each target's position); scores come back as float32, hence 1e-6 relative."""
    hf = copy.deepcopy(_lm("qwen2")).double()
    ids, mask, targets = _continuation()
    result = attribute_tokens(hf, ids, mask, targets, method=method, ig_steps=4)
    for m in range(len(result.rows)):
        t = int(result.positions[m])
        alone = _separate(hf, result, m, method, ig_steps=4)
        torch.testing.assert_close(result.matrix[m, : t + 1].double(), alone.double(), rtol=1e-6,
                                   atol=1e-6 * float(alone.abs().max()))
        assert not result.matrix[m, t + 1 :].any()


@pytest.mark.parametrize("kind", KINDS)
def test_cp_lrp_conserves_every_row_with_zero_biases_and_eps_0(kind):
    """Σ row = the target's logit, for every target; with ``score="logprob"`` Σ row = z_t − Σ_j p_j z_j
    (the softmax held constant), which is log p_t + H(p). float32: within 1e-5 of the largest |logit| (a
    z_t − Σ p z near 0 makes the ratio itself meaningless)."""
    hf = zero_biases(_lm(kind))
    ids, mask, targets = _continuation()
    logit = attribute_tokens(hf, ids, mask, targets, method="cp_lrp", eps=0.0)
    scale = float(logit.logits.abs().max())
    torch.testing.assert_close(logit.matrix.sum(-1), logit.explained, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(logit.explained, logit.logits.gather(1, logit.target[:, None])[:, 0])
    assert logit.explained.abs().max() > 0.1  # not ≈ 0
    logprob = attribute_tokens(hf, ids, mask, targets, method="cp_lrp", eps=0.0, score="logprob")
    torch.testing.assert_close(logprob.matrix.sum(-1), logprob.explained, rtol=0, atol=1e-5 * scale)
    p = torch.softmax(logprob.logits.double(), -1)
    entropy = -(p * p.log()).sum(-1)
    torch.testing.assert_close(logprob.explained.double(), logprob.logprob.double() + entropy, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_logprob_under_the_plain_gradient_is_the_gradient_of_log_p():
    """The seed e_t − p is exactly ∇_z log p_t: Gradient × Input of score="logprob" equals GI of the
    log-softmax by autograd on our own model (float64)."""
    hf = copy.deepcopy(_lm("llama")).double()
    ids, mask, targets = _continuation()
    result = attribute_tokens(hf, ids, mask, targets, method="grad_x_input", score="logprob")
    ours = from_hf(hf)
    for m in (0, 4, 8):
        b, t = int(result.rows[m]), int(result.positions[m])
        e = ours.embed(ids[b : b + 1, : t + 1], attention_mask=mask[b : b + 1, : t + 1]).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = ours.forward_from_embeddings(e, mask[b : b + 1, : t + 1], read_index=torch.tensor([t]))
            (grad,) = torch.autograd.grad(torch.log_softmax(logits, -1)[0, result.target[m]], e)
        # float64 model, float32 scores: 1e-6 relative
        torch.testing.assert_close(result.matrix[m, : t + 1].double(), (e * grad).sum(-1)[0].detach() * mask[b, : t + 1],
                                   rtol=1e-6, atol=1e-6 * float(grad.abs().max() * e.detach().abs().max()))


@pytest.mark.slow
def test_packed_contrast_and_summed_seeds():
    hf = _lm("gemma2")
    ids, mask, targets = _continuation()
    both = attribute_tokens(hf, ids, mask, targets, method="attnlrp", contrast=5)
    a = attribute_tokens(hf, ids, mask, targets, method="attnlrp")
    b = attribute_tokens(hf, ids, mask, torch.where(targets >= 0, 5, -1), method="attnlrp")
    scale = a.matrix.abs().max()
    torch.testing.assert_close(both.matrix, a.matrix - b.matrix, rtol=0, atol=1e-5 * scale)
    summed = attribute_tokens(hf, ids, mask, targets, method="attnlrp", matrix=False)  # one backward
    torch.testing.assert_close(summed.scores, a.scores, rtol=0, atol=1e-5 * a.scores.abs().max())


class _HeadProducts(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the matrix products that read a [vocab, hidden] operand (the LM head's weight)."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.count = tuple(shape), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.count += any(torch.is_tensor(a) and {tuple(a.shape), tuple(a.shape[::-1])} & {self.shape}
                              for a in args)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input"])
def test_the_head_is_read_once_forward_and_once_backward_whatever_the_number_of_targets(method):
    """The head is row-wise: one backward through it serves every target (``head_input``), so its
    [vocab, hidden] weight — the largest of a small LM — enters one GEMM forward and one backward
    whether 1 or 9 targets are explained (before: one product per backward, 6 for the 9 targets)."""
    hf = _lm("llama")
    ids, mask, targets = _continuation()
    shape = hf.lm_head.weight.shape
    one = torch.full_like(targets, -1)
    one[0, 7] = targets[0, 7]
    for chosen in (one, targets):  # 1 target; 9 targets over 5 ranks (5 backwards)
        with _HeadProducts(shape) as products:
            attribute_tokens(hf, ids, mask, chosen, method=method, chunk=1)
        assert products.count == 2, (int((chosen >= 0).sum()), products.count)


@pytest.mark.parametrize("kind", ["llama", pytest.param("gemma3_text", marks=pytest.mark.slow), "gpt2"])
def test_left_padding_changes_nothing(kind):
    """Each row of a left-padded batch equals the row alone (positions count real tokens, as generate
    does: GPT-2's learned positions included). float64 model, float32 scores: 1e-6 relative."""
    hf = copy.deepcopy(_lm(kind)).double()
    ids, mask, targets = _continuation()
    batch = attribute_tokens(hf, ids, mask, targets, method="attnlrp")
    for b in range(2):
        keep = mask[b].bool()
        alone = attribute_tokens(hf, ids[b : b + 1, keep], None, targets[b : b + 1, keep], method="attnlrp")
        rows = batch.matrix[batch.rows == b][:, keep]
        torch.testing.assert_close(rows.double(), alone.matrix.double(), rtol=1e-6,
                                   atol=1e-6 * float(alone.matrix.abs().max()))
        assert not batch.matrix[batch.rows == b][:, ~keep].any()


def test_bad_targets_are_refused():
    hf = _lm("llama")
    ids, mask = _left()
    with pytest.raises(InputError, match="padding position"):
        attribute_tokens(hf, ids, mask, torch.where(mask == 0, 3, -1))
    with pytest.raises(InputError, match="no target"):
        attribute_tokens(hf, ids, mask, torch.full_like(ids, -1))
    with pytest.raises(InputError, match="out of range"):
        attribute_tokens(hf, ids, mask, torch.where(mask == 1, 100, -1))
    with pytest.raises(InputError, match="unknown score"):
        attribute_tokens(hf, ids, mask, score="prob")
    with pytest.raises(InputError, match="not a causal language model"):
        from model_factory import make_hf

        attribute_tokens(make_hf("llama"), ids, mask)
