"""A config.json that leaves out a value means transformers' default for the family, as it does in
transformers (``save_pretrained`` writes only what differs from some defaults)."""

import pytest

from lrp_kernels.models import registry
from model_factory import require_family

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.family  # parity with transformers: also run at the lowest supported release

FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "hidden_act")
# RoBERTa, XLM-R and CamemBERT share one config class; their vocab_size defaults differ (see roberta.py)
SHARED_VOCAB = {"roberta", "xlm-roberta", "camembert"}


@pytest.mark.parametrize("model_type", registry.supported_model_types())
def test_left_out_values_are_transformers_defaults(model_type):
    require_family(model_type)
    hf = transformers.AutoConfig.for_model(model_type)
    ours = registry.family_for(model_type).config.from_dict({"model_type": model_type})
    fields = [f for f in FIELDS if getattr(hf, f, None) is not None]
    if model_type in SHARED_VOCAB:
        fields.remove("vocab_size")
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(hf, f) for f in fields}
