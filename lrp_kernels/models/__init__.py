"""The model layer: encoder classifiers built from the LRP ops, one small module per family.

``blocks`` (the pass and the shared blocks) → ``base`` (the classifier base class) → ``families/*``
(one file per architecture, registered by ``model_type``) → ``loading`` (checkpoint directories and
in-memory ``transformers`` models). ``checkpoint`` reads weights and knows nothing of the models.
"""

from lrp_kernels.models.base import EncoderClassifier
from lrp_kernels.models.config import Head, ModelConfig
from lrp_kernels.models.families.albert import AlbertClassifier
from lrp_kernels.models.families.bert import BertClassifier
from lrp_kernels.models.families.distilbert import DistilBertClassifier
from lrp_kernels.models.families.electra import ElectraClassifier
from lrp_kernels.models.families.roberta import RobertaClassifier
from lrp_kernels.models.loading import as_lrp_model, build, config_from_dict, from_hf, load_pretrained, read_config
from lrp_kernels.models.registry import Family, family, family_for, register, supported_model_types


def __getattr__(name: str):
    if name == "SUPPORTED_MODEL_TYPES":  # computed: families register on import
        return supported_model_types()
    raise AttributeError(f"module 'lrp_kernels.models' has no attribute {name!r}")


__all__ = [
    "AlbertClassifier",
    "BertClassifier",
    "DistilBertClassifier",
    "ElectraClassifier",
    "EncoderClassifier",
    "Family",
    "Head",
    "ModelConfig",
    "RobertaClassifier",
    "SUPPORTED_MODEL_TYPES",
    "as_lrp_model",
    "build",
    "config_from_dict",
    "family",
    "family_for",
    "from_hf",
    "load_pretrained",
    "read_config",
    "register",
    "supported_model_types",
]
