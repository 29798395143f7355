"""The Python BERT/RoBERTa classifier the LRP rules run on, and Hugging Face checkpoint loading."""

from lrp_kernels.models.bert import BertClassifier
from lrp_kernels.models.config import SUPPORTED_MODEL_TYPES, ModelConfig
from lrp_kernels.models.loading import from_hf, load_pretrained

__all__ = ["BertClassifier", "ModelConfig", "SUPPORTED_MODEL_TYPES", "from_hf", "load_pretrained"]
