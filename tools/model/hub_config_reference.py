#!/usr/bin/env python3
"""What transformers reads from each verbatim Hub config.json, as the test's independent reference.

Purpose
-------
test/fixtures/configs/hub/*.json are config.json files of real Hub checkpoints (see SOURCES.md).
For each one whose architecture transformers knows, this records the sizes transformers' own
config classes give (file values, and its per-model_type defaults for what the file leaves out)
and the exact parameter count of the model built from it on the meta device (no weights are
allocated or downloaded). test/runtime/hubConfigs.test.ts checks the runtime's parser and its
parameter count against this file.

How to run (from the repository root)
-------------------------------------
    /tmp/h8venv/bin/python tools/model/hub_config_reference.py

Writes test/fixtures/configs/hub/transformers-reference.json. The output is committed; tests
never run Python.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    Idefics3ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)

HUB = Path(__file__).resolve().parents[2] / "test/fixtures/configs/hub"
QWEN_VL = {"Qwen2VLForConditionalGeneration": Qwen2VLForConditionalGeneration, "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLForConditionalGeneration}
IMAGE_MODELS = {
    "LlavaForConditionalGeneration": LlavaForConditionalGeneration,
    "LlavaNextForConditionalGeneration": LlavaNextForConditionalGeneration,
    "LlavaOnevisionForConditionalGeneration": LlavaOnevisionForConditionalGeneration,
    "Idefics3ForConditionalGeneration": Idefics3ForConditionalGeneration,
}
SUPPORTED = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", *IMAGE_MODELS, *QWEN_VL}


def text_values(t) -> dict:
    heads = t.num_attention_heads
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // heads
    windows = None
    if t.model_type == "mistral":
        windows = [t.sliding_window] * t.num_hidden_layers
    elif t.model_type == "qwen2":
        windows = [t.sliding_window if kind == "sliding_attention" else None for kind in t.layer_types]
    else:
        windows = [None] * t.num_hidden_layers
    rope = getattr(t, "rope_scaling", None)
    return {
        "modelType": t.model_type,
        "hiddenSize": t.hidden_size,
        "numLayers": t.num_hidden_layers,
        "numHeads": heads,
        "numKvHeads": t.num_key_value_heads if t.num_key_value_heads is not None else heads,
        "headDim": head_dim,
        "intermediateSize": t.intermediate_size,
        "vocabSize": t.vocab_size,
        "maxPositionEmbeddings": t.max_position_embeddings,
        "ropeTheta": float(t.rope_theta),
        "ropeScaling": dict(rope) if rope else None,
        "rmsNormEps": float(t.rms_norm_eps),
        "tieWordEmbeddings": bool(t.tie_word_embeddings),
        "layerWindows": windows,
    }


def vision_values(v) -> dict:
    return {
        "modelType": v.model_type,
        "hiddenSize": v.hidden_size,
        "numLayers": v.num_hidden_layers,
        "numHeads": v.num_attention_heads,
        "intermediateSize": v.intermediate_size,
        "imageSize": v.image_size,
        "patchSize": v.patch_size,
    }


def idefics3_reference(config, params: int) -> dict:
    v = config.vision_config
    # Idefics3Processor's image_seq_len: the frame's patch grid after the connector's pixel shuffle.
    tokens_per_frame = ((v.image_size // v.patch_size) ** 2) // (config.scale_factor**2)
    return {
        "architecture": "Idefics3ForConditionalGeneration",
        "text": text_values(config.text_config),
        "vision": vision_values(v),
        "imageTokenIndex": config.image_token_id,
        "scaleFactor": config.scale_factor,
        "imageTokens": tokens_per_frame,
        "parameters": params,
    }


def qwen_vl_reference(raw: dict) -> dict:
    """Qwen2-VL / Qwen2.5-VL: the text model (its rope_scaling holds the M-RoPE sections) and the vision tower."""
    config = AutoConfig.for_model(**raw)
    arch = raw["architectures"][0]
    with torch.device("meta"):
        model = QWEN_VL[arch](config)
    params = sum(p.numel() for p in model.parameters())
    t = config.text_config
    v = config.vision_config
    qwen25 = arch == "Qwen2_5_VLForConditionalGeneration"
    return {
        "architecture": arch,
        "text": text_values(t),
        "qwen": {
            "mropeSection": list(t.rope_scaling["mrope_section"]),
            "imageTokenId": config.image_token_id,
            "vision": {
                "depth": v.depth,
                "hiddenSize": v.hidden_size if qwen25 else v.embed_dim,
                "numHeads": v.num_heads,
                "intermediateSize": v.intermediate_size if qwen25 else int(v.embed_dim * v.mlp_ratio),
                "patchSize": v.patch_size,
                "temporalPatchSize": v.temporal_patch_size,
                "spatialMergeSize": v.spatial_merge_size,
                "outHiddenSize": v.out_hidden_size if qwen25 else v.hidden_size,
                "windowSize": v.window_size if qwen25 else None,
                "fullAttentionBlocks": list(v.fullatt_block_indexes) if qwen25 else [],
            },
        },
        "parameters": params,
    }


def reference(raw: dict) -> dict:
    config = AutoConfig.for_model(**raw)
    arch = raw["architectures"][0]
    if arch in QWEN_VL:
        return qwen_vl_reference(raw)
    with torch.device("meta"):
        if arch in IMAGE_MODELS:
            model = IMAGE_MODELS[arch](config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    if arch == "Idefics3ForConditionalGeneration":
        return idefics3_reference(config, params)
    if arch not in IMAGE_MODELS:
        return {"architecture": arch, "text": text_values(config), "parameters": params}
    v = config.vision_config
    # The tower's positions: the patch grid (image_size // patch_size per side, as the conv floors),
    # plus CLIP's class embedding; the "default" strategy drops the first position (LlavaModel).
    grid = (v.image_size // v.patch_size) ** 2
    positions = grid + (1 if v.model_type == "clip_vision_model" else 0)
    image_tokens = positions - (1 if config.vision_feature_select_strategy == "default" else 0)
    # LLaVA-NeXT / OneVision: those are per tile; the image's count depends on its size (any resolution).
    anyres = {}
    if arch != "LlavaForConditionalGeneration":
        anyres = {"imageGridPinpoints": config.image_grid_pinpoints, "visionAspectRatio": getattr(config, "vision_aspect_ratio", None)}
    # PreTrainedModel.tie_weights reads the text config's tie_word_embeddings (its class default
    # when text_config leaves it out), not LlavaConfig's top-level one.
    text = text_values(config.get_text_config(decoder=True))
    return {
        "architecture": arch,
        "text": text,
        "vision": vision_values(v),
        "imageTokenIndex": config.image_token_index,
        "visionFeatureLayer": config.vision_feature_layer,
        "selectStrategy": config.vision_feature_select_strategy,
        "imageTokens": image_tokens,
        **anyres,
        "parameters": params,
    }


def main() -> None:
    out = {"transformers": version("transformers"), "torch": version("torch"), "configs": {}}
    for path in sorted(HUB.glob("*.json")):
        if path.name == "transformers-reference.json":
            continue
        raw = json.loads(path.read_text())
        arch = raw["architectures"][0]
        if arch not in SUPPORTED:
            out["configs"][path.name] = {"architecture": arch, "supported": False}
            continue
        out["configs"][path.name] = reference(raw)
        print(path.name, out["configs"][path.name]["parameters"])
    (HUB / "transformers-reference.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    transformers.logging.set_verbosity_error()
    main()
