"""Long inputs: no [L, L] tensor on the default path of any family, and ``checkpoint=True``.

The first test records every tensor that every torch op makes (a ``TorchDispatchMode``) while
``lrp_kernels.attribute`` runs forward and backward, for every gradient method (and integrated
gradients) on a ModernBERT (sliding windows, rotary positions), a EuroBERT (grouped K/V heads,
rotary positions) and a BERT, on the cpp and torch backends, and the plain forward of each; L is
longer than every other dimension of these models, so a tensor with two dimensions ≥ L that are not
broadcast (stride 0) is a quadratic one. The attention maps of lat / rollout are [L, L] by nature
and are not on these paths. DeBERTa is the exception (its disentangled attention is eager: scores,
probabilities and the relative-position index are [L, L] per layer, see README): the test asserts
that it does record them, so that it is revisited when it is blocked too.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model_factory import make_hf

from lrp_kernels import attribute, from_hf
from lrp_kernels.backends import registry
from lrp_kernels.backends.torch import attention as torch_attention

LENGTH = 131  # > every other dimension of the models below (hidden 36, 2 × intermediate 100, vocab 100)
GRADIENT_METHODS = ("gradient", "grad_x_input", "lrp_epsilon", "attnlrp", "cp_lrp", "integrated_gradients")


class QuadraticTensors(TorchDispatchMode):
    """Records (op, shape) of every op output with two non-broadcast dimensions of at least ``length``."""

    def __init__(self, length: int):
        super().__init__()
        self.length, self.found = length, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                big = [n for n, s in zip(t.shape, t.stride()) if n >= self.length and s != 0]
                if len(big) >= 2:
                    self.found.append((str(func), tuple(t.shape)))
        return out


def _model(kind):
    model = from_hf(make_hf(kind, max_position_embeddings=256))
    ids = torch.randint(3, 100, (2, LENGTH), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 90:] = 0  # right padding: padded query rows read every real key
    return model, ids, mask


def _backends():
    out = []
    for name in ("cpp", "torch"):
        backend, reason = registry.load(name)
        reason = reason or (backend.unavailable_reason("cpu") if backend else None)
        out.append(pytest.param(name, id=name, marks=pytest.mark.skipif(reason is not None, reason=str(reason))))
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("kind", ["modernbert", "eurobert", "bert"])
def test_no_quadratic_tensor_on_the_default_path(monkeypatch, kind, backend):
    """The torch reference's chunked path takes as many query rows per chunk as a fixed budget of
    scores allows (all of them at this L): here chunks of 64 rows, so that a chunk that grew with
    L² would show."""
    monkeypatch.setattr(torch_attention, "CHUNK_ELEMENTS", 1)
    model, ids, mask = _model(kind)
    recorder = QuadraticTensors(LENGTH)
    with recorder:
        with torch.no_grad():
            model(ids, mask)
        for method in GRADIENT_METHODS:
            attribute(model, ids, mask, method=method, backend=backend, ig_steps=2)
    assert recorder.found == []


def test_the_recorder_sees_quadratic_tensors():
    """DeBERTa's disentangled attention (the stated exception), and the attention maps of rollout."""
    model, ids, mask = _model("deberta_v3")
    with QuadraticTensors(LENGTH) as recorder:
        attribute(model, ids, mask, method="attnlrp")
    assert any(shape[-2:] == (LENGTH, LENGTH) for _, shape in recorder.found)
    model, ids, mask = _model("bert")
    with QuadraticTensors(LENGTH) as recorder:
        attribute(model, ids, mask, method="rollout")
    assert any(shape[-2:] == (LENGTH, LENGTH) for _, shape in recorder.found)


@pytest.mark.parametrize("method", ["grad_x_input", "attnlrp", "cp_lrp", "integrated_gradients"])
@pytest.mark.parametrize("kind", ["modernbert", "deberta_v3", "albert"])
def test_checkpoint_gives_the_same_scores(kind, method):
    """``checkpoint=True`` recomputes each layer's forward during the backward (non-reentrant
    torch.utils.checkpoint): the same deterministic kernels on the same inputs in the same process,
    so the backward reads bit-identical activations and the scores are bit-identical (DeBERTa's
    position relevance too)."""
    model, ids, mask = _model(kind)
    plain = attribute(model, ids, mask, method=method, ig_steps=2)
    again = attribute(model, ids, mask, method=method, ig_steps=2, checkpoint=True)
    assert torch.equal(again.scores, plain.scores) and torch.equal(again.logits, plain.logits)
    if plain.position_relevance is not None:
        assert torch.equal(again.position_relevance, plain.position_relevance)


def test_checkpoint_keeps_only_the_layer_inputs():
    """With checkpoint=True the autograd graph saves far fewer activations: counted by the saved-tensor
    hooks over one attnlrp backward of a 4-layer ModernBERT."""
    from torch.autograd.graph import saved_tensors_hooks

    model, ids, mask = _model("modernbert")

    def saved_bytes(checkpoint):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with saved_tensors_hooks(pack, lambda t: t):
            attribute(model, ids, mask, method="attnlrp", checkpoint=checkpoint)
        return total[0]

    assert saved_bytes(True) < 0.5 * saved_bytes(False)


def test_checkpoint_rejects_layers():
    from lrp_kernels.errors import InputError

    model, ids, mask = _model("bert")
    with pytest.raises(InputError, match="checkpoint=True does not combine with layers=True"):
        attribute(model, ids, mask, method="attnlrp", layers=True, checkpoint=True)


def test_every_label_of_a_windowed_model_without_vmap():
    """target="all" of a plain-gradient method vmaps its backward; a ModernBERT's windowed layers run
    the attention op (no vmap rule), so the backward runs once per label: the same scores as one
    target at a time."""
    model, ids, mask = _model("modernbert")
    every = attribute(model, ids, mask, method="grad_x_input", target="all")
    for label in range(model.config.num_labels):
        one = attribute(model, ids, mask, method="grad_x_input", target=label)
        torch.testing.assert_close(every.scores[:, label], one.scores, rtol=1e-5, atol=1e-6)
