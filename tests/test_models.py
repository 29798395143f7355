"""The Python BERT/RoBERTa: logit parity with transformers, checkpoint loading, clear load errors."""

import json
import os
import warnings

import pytest
import torch

from lrp_kernels import CheckpointError
from lrp_kernels.models import EncoderClassifier, from_hf, load_pretrained
from model_factory import make_hf, padded

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.family  # parity with transformers: also run at the lowest supported release
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# fp32 parity: the same ops in the same order as transformers' eager path; sdpa differs in the last bits.
PARITY_ATOL = 1e-5


def padded_batch(pad_id, vocab=100, lengths=(12, 7, 3), seed=1):
    ids, mask, _ = padded(lengths, pad_id=pad_id, vocab=vocab, seed=seed)
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_equal_transformers(kind, attn):
    hf = make_hf(kind, attn_implementation=attn)
    ids, mask = padded_batch(hf.config.pad_token_id)
    types = torch.zeros_like(ids)
    if kind == "bert":
        types[:, 4:] = 1
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        ours = from_hf(hf)(ids, mask, types)
    torch.testing.assert_close(ours, expected, atol=PARITY_ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_from_hf_shares_parameters(kind):
    hf = make_hf(kind)
    ours = from_hf(hf)
    hf_params = {p.data_ptr() for p in hf.parameters()}
    assert all(p.data_ptr() in hf_params for p in ours.parameters())
    with torch.no_grad():  # a change to the HF model is seen by ours
        hf.classifier.weight.mul_(2) if kind == "bert" else hf.classifier.out_proj.weight.mul_(2)
        ids, mask = padded_batch(hf.config.pad_token_id)
        torch.testing.assert_close(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, atol=PARITY_ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("safe", [True, False])
def test_load_pretrained_from_directory(tmp_path, kind, safe):
    hf = make_hf(kind)
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    if not safe:  # transformers 5 may still write safetensors; make sure the .bin path is exercised
        for f in tmp_path.glob("*.safetensors"):
            state = hf.state_dict()
            torch.save(state, tmp_path / "pytorch_model.bin")
            f.unlink()
    model = load_pretrained(tmp_path)
    assert isinstance(model, EncoderClassifier)
    assert not any(p.requires_grad for p in model.parameters())
    ids, mask = padded_batch(hf.config.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   atol=PARITY_ATOL, rtol=0)


def test_pretrained_minilm_parity(minilm_dir):
    """The real pretrained MiniLM with a fresh 2-class head, loaded by transformers and by us."""
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    ours = from_hf(hf)
    ids, mask = padded_batch(0, vocab=30000, lengths=(40, 17, 5, 64))
    ids[:, 0] = 101
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask)
    torch.testing.assert_close(got, expected, atol=PARITY_ATOL, rtol=0)


def test_headless_checkpoint_gets_a_seeded_fresh_head(minilm_dir):
    with pytest.warns(UserWarning, match="initialized randomly"):
        a = load_pretrained(minilm_dir, num_labels=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = load_pretrained(minilm_dir, num_labels=2)
    assert a.config.num_labels == 2 and a.config.hidden_size == 384
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert a.classifier.weight.abs().sum() > 0


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_pretrained(tmp_path)


def test_missing_weights_names_the_file(tmp_path):
    make_hf("bert").config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(tmp_path / "nope")


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(CheckpointError, match="supported: bert, roberta"):
        load_pretrained(tmp_path)


def test_truncated_checkpoint_is_rejected(tmp_path):
    hf = make_hf("bert")
    hf.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    del state[next(k for k in state if "encoder.layer.1.output.dense.weight" in k)]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lack"):
        load_pretrained(tmp_path)
