"""attribute() refuses to be silently wrong: replaced parameters, unsupported heads and decoders,
non-integral targets, left padding, inference mode, backends that cannot run (issue 11 §4)."""

import numpy as np
import pytest
import torch

from lrp_kernels import CheckpointError, InputError, attribute, available_backends
from lrp_kernels.models import from_hf

transformers = pytest.importorskip("transformers")
from model_factory import make_hf, padded  # noqa: E402


@pytest.fixture(scope="module")
def hf():
    return make_hf("bert", initializer_range=0.2)


def _batch(model):
    ids, mask, _ = padded((9, 5, 7), pad_id=model.config.pad_token_id)
    return ids, mask


def test_a_replaced_head_is_converted_afresh(hf):
    ids, mask = _batch(hf)
    before = attribute(hf, ids, mask, method="attnlrp").logits
    original = hf.classifier
    try:
        hf.classifier = torch.nn.Linear(hf.config.hidden_size, hf.config.num_labels)
        after = attribute(hf, ids, mask, method="attnlrp").logits
        expected = hf(input_ids=ids, attention_mask=mask).logits.detach()
    finally:
        hf.classifier = original
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, after)


def test_decoders_and_other_heads_are_refused(tmp_path):
    decoder = make_hf("bert", is_decoder=True)
    with pytest.raises(CheckpointError, match="decoder"):
        from_hf(decoder)
    decoder.save_pretrained(tmp_path / "decoder")
    from lrp_kernels import load_pretrained

    with pytest.raises(CheckpointError, match="decoder"):
        load_pretrained(tmp_path / "decoder")
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=40)
    choice = transformers.BertForMultipleChoice(config).eval()
    with pytest.raises(CheckpointError, match="not a sequence classifier"):
        from_hf(choice)
    choice.save_pretrained(tmp_path / "choice")
    with pytest.raises(CheckpointError, match="BertForMultipleChoice is not a sequence classifier"):
        load_pretrained(tmp_path / "choice")


@pytest.mark.parametrize("target", [2.7, [1.5, 0.2, 1.0], "positive", True])
def test_non_integral_targets_are_refused(hf, target):
    ids, mask = _batch(hf)
    with pytest.raises(InputError, match="target"):
        attribute(hf, ids, mask, method="cp_lrp", target=target)


@pytest.mark.parametrize("target", [1, 1.0, np.int64(1), torch.tensor(1), [1, 1, 1], np.array([1, 1, 1]),
                                    torch.tensor([1.0, 1.0, 1.0])])
def test_integer_targets_of_every_type_are_taken(hf, target):
    ids, mask = _batch(hf)
    result = attribute(hf, ids, mask, method="cp_lrp", target=target)
    assert result.target.tolist() == [1, 1, 1]


def test_explainer_takes_numpy_and_tensor_targets(tmp_path):
    from tiny_checkpoint import shared_tiny_checkpoint

    from lrp_kernels import Explainer

    explainer = Explainer.from_pretrained(shared_tiny_checkpoint(), method="cp_lrp")
    for target in (np.int64(1), torch.tensor(1)):
        assert [e.target for e in explainer.explain(["good film", "bad plot"], target=target)] == [1, 1]
    with pytest.raises(InputError, match="integral"):
        explainer.explain(["good film"], target=0.5)


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input", "integrated_gradients", "rollout"])
def test_left_padding_is_repacked(hf, method):
    """A left-padded batch gets the scores of the same sequences right-padded, at its own positions."""
    ids, mask = _batch(hf)
    right = attribute(hf, ids, mask, method=method, target=0, ig_steps=4)
    lengths = mask.sum(1)
    left_ids, left_mask = torch.full_like(ids, hf.config.pad_token_id), torch.zeros_like(mask)
    for i, n in enumerate(lengths.tolist()):
        left_ids[i, -n:], left_mask[i, -n:] = ids[i, :n], 1
    left = attribute(hf, left_ids, left_mask, method=method, target=0, ig_steps=4)
    torch.testing.assert_close(left.logits, right.logits, rtol=1e-5, atol=1e-6)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(left.scores[i, -n:], right.scores[i, :n], rtol=1e-5, atol=1e-6)
        assert torch.equal(left.scores[i, :-n], torch.zeros(ids.shape[1] - n))


def test_attribute_inside_inference_mode(hf):
    ids, mask = _batch(hf)
    expected = attribute(hf, ids, mask, method="attnlrp")
    with torch.inference_mode():
        got = attribute(hf, ids.clone(), mask.clone(), method="attnlrp")
    torch.testing.assert_close(got.scores, expected.scores)


def test_no_backend_claims_cuda_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    reasons = available_backends("cuda")
    assert all(reason for reason in reasons.values()), reasons
