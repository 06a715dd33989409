"""Vary models: the vision vocabulary network, Vary-tiny and Vary-base, and their inputs."""

from vary.model.builder import (
    ClipConfig,
    ModelConfig,
    TokenizerConfig,
    VocabularyConfig,
    build_model,
    build_tokenizer,
    build_vary_config,
    load_model_config,
    load_pretrained,
    save_pretrained,
)
from vary.model.configuration import VaryConfig
from vary.model.growth import deepen, widen
from vary.model.image_processing import ImageProcessor, VaryImageProcessor
from vary.model.modeling import VaryBase, VaryForCausalLM, VaryTiny
from vary.model.processor import VaryProcessor
from vary.model.templates import encode_conversation, get_template, ocr_conversation
from vary.model.vocabulary import VisionVocabulary

__all__ = [
    "ClipConfig",
    "ImageProcessor",
    "ModelConfig",
    "TokenizerConfig",
    "VaryBase",
    "VaryConfig",
    "VaryForCausalLM",
    "VaryImageProcessor",
    "VaryProcessor",
    "VaryTiny",
    "VisionVocabulary",
    "VocabularyConfig",
    "build_model",
    "build_tokenizer",
    "build_vary_config",
    "deepen",
    "encode_conversation",
    "get_template",
    "load_model_config",
    "load_pretrained",
    "ocr_conversation",
    "save_pretrained",
    "widen",
]
