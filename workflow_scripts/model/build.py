"""Assemble transformers' own ``LlavaForConditionalGeneration`` from a base LLM and a CLIP checkpoint (hub
ids or local folders) with a fresh connector, and the matching ``LlavaProcessor``.

Connector: ``mlp2x_gelu`` is Llava's projector as is. The paper's ``linear`` connector is one Linear
layer; Llava's projector class always has two, so ``linear`` uses ``projector_hidden_act="linear"`` and a
second layer fixed to the identity (never trained, not counted): stock ``from_pretrained`` then computes
exactly the single-Linear function, with no custom code needed to load the result.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
from transformers.utils import logging as hf_logging

from workflow_scripts.data.labels import IMAGE_END, IMAGE_PLACEHOLDER, IMAGE_START
from workflow_scripts.model.weights import load_kwargs

CONNECTORS = {"linear": "linear", "mlp2x_gelu": "gelu"}  # connector type -> projector_hidden_act


@contextlib.contextmanager
def expected_warnings_muted():
    """Mute transformers' warnings for loads whose surprises are expected: a CLIPVisionModel read from a full
    CLIP checkpoint reports ~30 lines of "UNEXPECTED" text-tower keys, and resizing the embeddings for <image>
    explains its initialisation. Errors still show."""
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def image_token_count(vision_config, select_strategy: str = "default") -> int:
    """Image tokens per image: one per patch (the CLS feature is dropped under ``default``)."""
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    return patches if select_strategy == "default" else patches + 1


def load_tokenizer(llm_path: str, image_start_end: bool = False):
    """The LLM's tokenizer with the image placeholder added (and ``<im_start>``/``<im_end>`` with
    ``image_start_end``) and right padding for training."""
    tokenizer = AutoTokenizer.from_pretrained(llm_path, padding_side="right")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # LLaMA has no pad token; LLaVA pads with <unk>
    tokenizer.add_tokens([IMAGE_PLACEHOLDER], special_tokens=True)
    if image_start_end:
        tokenizer.add_tokens([IMAGE_START, IMAGE_END], special_tokens=True)
    return tokenizer


def build_processor(llm_path: str, vision_path: str, select_strategy: str = "default", image_start_end: bool = False):
    """LlavaProcessor = the CLIP image processor + the LLM tokenizer (with ``<image>``)."""
    image_processor = AutoImageProcessor.from_pretrained(vision_path)
    tokenizer = load_tokenizer(llm_path, image_start_end)
    vision = CLIPVisionModel.config_class.from_pretrained(vision_path)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vision.patch_size,
                          vision_feature_select_strategy=select_strategy, num_additional_image_tokens=1,
                          image_token=IMAGE_PLACEHOLDER)


def build_mllm(llm_path: str, vision_path: str, connector: str = "linear", feature_layer: int = -2,
               select_strategy: str = "default", seed: int = 0, dtype=torch.float32, allow_pickle: bool = False,
               image_start_end: bool = False):
    """(model, processor): base weights loaded into a fresh LlavaForConditionalGeneration. Safetensors only
    unless ``allow_pickle`` (see model.weights). ``image_start_end``: LLaVA's ``mm_use_im_start_end``, two more
    tokens around the image's (their embeddings start at the mean embedding)."""
    if connector not in CONNECTORS:
        raise ValueError(f"connector must be one of {sorted(CONNECTORS)}, got {connector!r}")
    processor = build_processor(llm_path, vision_path, select_strategy, image_start_end)
    tokenizer = processor.tokenizer
    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype, **load_kwargs(llm_path, allow_pickle))
    with expected_warnings_muted():
        vision = CLIPVisionModel.from_pretrained(vision_path, dtype=dtype, **load_kwargs(vision_path, allow_pickle))
    text_config = llm.config
    text_config.tie_word_embeddings = False
    config = LlavaConfig(
        vision_config=vision.config, text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        image_seq_length=image_token_count(vision.config, select_strategy),
        projector_hidden_act=CONNECTORS[connector], vision_feature_layer=feature_layer,
        vision_feature_select_strategy=select_strategy, tie_word_embeddings=False)
    # The shell is built on the meta device and the loaded towers are moved in: a 13B model is never
    # random-initialised in fp32 beside its loaded weights (~52 GB more host memory per rank, and minutes of CPU).
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    if model.lm_head.weight is llm.model.embed_tokens.weight:  # a tied LLM: the study trains them apart
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    # A fresh connector with PyTorch's default Linear init, as LLaVA builds its mm_projector after loading the LLM.
    torch.manual_seed(seed)
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    if connector == "linear":
        projector = model.model.multi_modal_projector
        with torch.no_grad():
            projector.linear_2.weight.copy_(torch.eye(text_config.hidden_size))
            projector.linear_2.bias.zero_()
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise RuntimeError(f"build_mllm left tensors unloaded (meta): {on_meta[:5]}")
    with expected_warnings_muted():
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor
