#!/usr/bin/env python3
"""Tiny seeded LLaVA-NeXT and LLaVA-OneVision checkpoints and transformers' reference outputs on them.

Purpose
-------
Writes two checkpoint folders that transformers' `LlavaNextForConditionalGeneration` /
`LlavaOnevisionForConditionalGeneration` and `AutoProcessor` load as-is, and the parity fixtures
the TypeScript port is tested against:

* test/fixtures/models/tiny-llava-next/  CLIP tower 32 x 32 / patch 8 (a 4 x 4 grid, 16 tokens per
  tile under the "default" strategy), `vision_feature_layer` -2, Mistral text model (GQA, untied),
  `image_grid_pinpoints` llava-v1.6's five shapes scaled to the 32-pixel tile ([32, 64], [64, 32],
  [64, 64], [96, 32], [32, 96]); llava-v1.6-mistral-7b-hf's chat template (make_hub_shapes.py).
* test/fixtures/models/tiny-llava-onevision/  SigLIP tower 24 x 24 / patch 6 (4 x 4, 16 tokens per
  tile under "full"), `vision_feature_layer` -1, Qwen2 text model (tied), llava-onevision's 36
  pinpoints scaled to the 24-pixel tile, `vision_aspect_ratio` anyres_max_9 (large images are
  downscaled after unpadding); the ChatML template of the llava-hf onevision checkpoints.

The fixture images (test/fixtures/images, from make_tiny.py and make_smolvlm.py) pick different
pinpoints and are unpadded both ways: wide-code.png (150 x 56) and small-dot.png lose padding
columns, large-grid.png (300 x 220) and red-square.png (48 x 40) padding rows; large-grid.png is
downscaled after unpadding on OneVision (anyres_max_9).

test/fixtures/parity/<name>/<case>.json + <case>.safetensors: the messages, the rendered prompt,
the expanded input ids, each image's size, the processor's pixel values (each image's tiles,
base image first), the projector's output per tile (`frame_features`), the packed image features
(unpadded, newline per row, OneVision's downscale), the merged prompt embeddings, the prompt
logits, every layer's keys, values and attention column sums, and 32 greedy tokens. The
"conversation" case is two greedy turns on one cache, turn 2 fed as `Conversation` feeds it.

Every image is tiled (transformers' behaviour for a flat list of images, `batch_num_images` 1 per
image); OneVision's "several images of one sample are not tiled" mode is not recorded.

How to run (from the repository root, after make_tiny.py's and make_smolvlm.py's images exist)
    /path/to/venv/bin/python tools/model/make_llavanext.py
Deterministic (seeded weights, CPU, one thread); the outputs are committed; npm test never runs Python.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    CLIPVisionConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    SiglipVisionConfig,
)
from transformers.generation import GenerationConfig  # noqa: E402

import make_tiny  # noqa: E402
from make_hub_shapes import MISTRAL_TEMPLATE, ONEVISION_TEMPLATE  # noqa: E402
from make_tiny import CLIP_MEAN, CLIP_STD, build_tokenizer, fresh_dir, init_weights  # noqa: E402
from recording import cache_kv, forward_capturing  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
NEW_TOKENS = 32
LONG_TEXT = " ".join(make_tiny.CORPUS.splitlines()[7:])  # a few hundred tokens of plain text

NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
ONEVISION_PINPOINTS = [[24 * i, 24 * j] for i in range(1, 7) for j in range(1, 7)]
NEXT_SIGLIP_PINPOINTS = [[30, 60], [60, 30], [60, 60], [90, 30], [30, 90], [90, 90]]
ONEVISION_CLIP_PINPOINTS = [[32 * i, 32 * j] for i in range(1, 4) for j in range(1, 4)]

CASES = {
    # wide (150 x 56): one row of tiles, padding above and below; tall (40 x 110): one column, padding left and right.
    "two-images": {
        "images": ["wide-code.png", "tall-bars.png"],
        "messages": [[{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is in the second image?"}]],
    },
    # small and square: upscaled.
    "small-square": {"images": ["small-dot.png"], "messages": [[{"type": "text", "text": "Describe the picture."}, {"type": "image"}]]},
    # large (300 x 220): the largest pinpoints (OneVision: downscaled after unpadding); longer than one 512-token chunk.
    "long": {"images": ["large-grid.png"], "messages": [[{"type": "image"}, {"type": "text", "text": LONG_TEXT}]]},
    "conversation": {
        "images": ["red-square.png"],
        "messages": [
            [{"type": "image"}, {"type": "text", "text": "What is in the image?"}],
            [{"type": "text", "text": "What color is the square?"}],
        ],
    },
}


# The other-shape checkpoints: two images of other aspect ratios, and a long prompt.
VARIANT_CASES = {
    "two-images": {
        "images": ["blue-circle.png", "large-grid.png"],
        "messages": [[{"type": "image"}, {"type": "text", "text": "What differs between them?"}, {"type": "image"}]],
    },
    "long": CASES["long"],
}


def make_next(name: str, seed: int):
    tokenizer = build_tokenizer(image_token_inside=False, add_bos=True)
    tokenizer.chat_template = MISTRAL_TEMPLATE
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
    text = MistralConfig(
        vocab_size=416, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=None, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    config = LlavaNextConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-2, image_grid_pinpoints=NEXT_PINPOINTS,
        tie_word_embeddings=False, pad_token_id=0,
    )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=NEXT_PINPOINTS, resample=3,
        do_center_crop=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_pad=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        chat_template=MISTRAL_TEMPLATE, image_token="<image>", num_additional_image_tokens=1,
    )
    save(name, LlavaNextForConditionalGeneration(config), processor, seed)
    return processor


def chatml_tokenizer():
    """The tiny tokenizer with ChatML's turn markers and the llava-hf onevision template."""
    tokenizer = build_tokenizer(image_token_inside=True, add_bos=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken("<|im_start|>", special=True, normalized=False), AddedToken("<|im_end|>", special=True, normalized=False)]})
    tokenizer.chat_template = ONEVISION_TEMPLATE
    return tokenizer


def tiny_qwen2_text() -> Qwen2Config:
    """The Qwen2 text model (GQA, tied head) of the SigLIP checkpoints."""
    return Qwen2Config(
        vocab_size=416, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def make_onevision(name: str, seed: int):
    tokenizer = chatml_tokenizer()
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=24, patch_size=6, vision_use_head=False)
    text = tiny_qwen2_text()
    config = LlavaOnevisionConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="full", vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9", image_grid_pinpoints=ONEVISION_PINPOINTS, tie_word_embeddings=True, pad_token_id=0,
    )
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 24, "width": 24}, image_grid_pinpoints=ONEVISION_PINPOINTS, resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=True,
    )
    processor = onevision_processor(image_processor, tokenizer, ONEVISION_PROCESSOR, ONEVISION_TEMPLATE)
    save(name, LlavaOnevisionForConditionalGeneration(config), processor, seed)
    return processor


ONEVISION_PROCESSOR = {"image_token": "<image>", "num_image_tokens": 16, "processor_class": "LlavaOnevisionProcessor", "video_token": "<video>", "vision_aspect_ratio": "anyres_max_9", "vision_feature_select_strategy": "full"}


ONEVISION_CLIP_PROCESSOR = {**ONEVISION_PROCESSOR, "num_image_tokens": 17, "vision_aspect_ratio": "anyres_max_2", "vision_feature_select_strategy": "default"}


def onevision_processor(image_processor, tokenizer, settings: dict, template: str) -> LlavaOnevisionProcessor:
    """LlavaOnevisionProcessor without its video processor (which needs torchvision, not installed): images only."""
    check = LlavaOnevisionProcessor.check_argument_for_proper_class
    LlavaOnevisionProcessor.check_argument_for_proper_class = lambda self, name, arg: None if arg is None else check(self, name, arg)
    try:
        kwargs = {k: v for k, v in settings.items() if k not in ("processor_class", "video_token")}
        processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=template, **kwargs)
        processor.saved_settings = settings
        return processor
    finally:
        LlavaOnevisionProcessor.check_argument_for_proper_class = check


def make_next_siglip(name: str, seed: int):
    """LLaVA-NeXT on other shapes: a SigLIP tower whose 30-pixel side is no multiple of its patch 8
    (a 3 x 3 grid, strategy "full"), two feature layers concatenated, a Qwen2 text model (tied),
    six pinpoints, size given as height / width; the ChatML template."""
    tokenizer = chatml_tokenizer()
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=30, patch_size=8, vision_use_head=False)
    text = tiny_qwen2_text()
    config = LlavaNextConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full", vision_feature_layer=[-3, -1], image_grid_pinpoints=NEXT_SIGLIP_PINPOINTS,
        projector_hidden_act="gelu", tie_word_embeddings=True, pad_token_id=0,
    )
    image_processor = LlavaNextImageProcessor(
        size={"height": 30, "width": 30}, crop_size={"height": 30, "width": 30}, image_grid_pinpoints=NEXT_SIGLIP_PINPOINTS, resample=3,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="full",
        chat_template=ONEVISION_TEMPLATE, image_token="<image>", num_additional_image_tokens=0,
    )
    save(name, LlavaNextForConditionalGeneration(config), processor, seed)
    return processor


def make_onevision_clip(name: str, seed: int):
    """OneVision on other shapes: a CLIP tower (strategy "default", so the processor's
    num_image_tokens counts the class token: 17), feature layer -2, a Llama text model,
    anyres_max_2 (downscaling sooner), 3 x 3 pinpoints of 32; llava-v1.6-mistral's template."""
    tokenizer = build_tokenizer(image_token_inside=False, add_bos=True)
    tokenizer.chat_template = MISTRAL_TEMPLATE
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(
        vocab_size=416, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default", vision_feature_layer=-2,
        vision_aspect_ratio="anyres_max_2", image_grid_pinpoints=ONEVISION_CLIP_PINPOINTS, tie_word_embeddings=False, pad_token_id=0,
    )
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 32, "width": 32}, image_grid_pinpoints=ONEVISION_CLIP_PINPOINTS, resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_pad=True,
    )
    processor = onevision_processor(image_processor, tokenizer, ONEVISION_CLIP_PROCESSOR, MISTRAL_TEMPLATE)
    save(name, LlavaOnevisionForConditionalGeneration(config), processor, seed)
    return processor


def save(name: str, model, processor, seed: int) -> None:
    out_dir = MODELS / name
    print(f"[{name}] -> {out_dir.relative_to(REPO)}")
    torch.manual_seed(seed)
    init_weights(model, seed=seed)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    fresh_dir(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    if isinstance(processor, LlavaOnevisionProcessor):
        # Its parts as LlavaOnevisionProcessor.save_pretrained writes them (the video processor aside).
        processor.tokenizer.save_pretrained(out_dir)
        processor.image_processor.save_pretrained(out_dir)
        (out_dir / "processor_config.json").write_text(json.dumps(processor.saved_settings, indent=2) + "\n")
        (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": processor.chat_template}, indent=2) + "\n")
    else:
        processor.save_pretrained(out_dir, save_jinja_files=False)
    reloaded = type(model).from_pretrained(out_dir, dtype=torch.float32)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k


def streamed_answer(tokenizer, ids: list[int]) -> str:
    """The answer text as `Conversation` keeps it: a trailing partial UTF-8 character held back, one leading space dropped."""
    text = ""
    for n in range(1, len(ids) + 1):
        decoded = tokenizer.decode(ids[:n], skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):
            text = decoded
    return text[1:] if text.startswith(" ") else text


def greedy(model, out, count: int, margins: list[float]):
    ids: list[int] = []
    cache, logits = out.past_key_values, out.logits[0, -1]
    for _ in range(count):
        nxt = int(logits.argmax())
        ids.append(nxt)
        top2 = logits.topk(2).values
        margins.append(float(top2[0] - top2[1]))
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[0, -1]
    return ids, out


def record(name: str, cls, processor, case_name: str, spec: dict) -> None:
    model_dir = MODELS / name
    model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    tok = processor.tokenizer
    cfg = model.config
    files = [f"test/fixtures/images/{f}" for f in spec["images"]]
    images = [Image.open(REPO / f).convert("RGB") for f in files]
    user1 = {"role": "user", "content": spec["messages"][0]}
    prompt = processor.apply_chat_template([user1], add_generation_prompt=True, tokenize=False)
    # A flat list of images: each is tiled (OneVision's batch_num_images 1 per image).
    inputs = processor(images=images, text=prompt, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    L = len(ids)
    lm = model.model.language_model
    with torch.no_grad():
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        sizes = inputs["image_sizes"].tolist()
        patches = [image_size_to_num_patches(s, cfg.image_grid_pinpoints, cfg.vision_config.image_size) for s in sizes]
        flat = torch.cat([pv[:n] for pv, n in zip(inputs["pixel_values"], patches)], dim=0)
        hidden = model.model.vision_tower(flat, output_hidden_states=True).hidden_states
        layer = cfg.vision_feature_layer
        selected = hidden[layer] if isinstance(layer, int) else torch.cat([hidden[i] for i in layer], dim=-1)
        if cfg.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        frame_features = model.model.multi_modal_projector(selected)
        packed = model.model.get_image_features(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
        image_features = torch.cat(list(packed), dim=0)
        out, captured = forward_capturing(model, lm, inputs)
        embeds = captured["inputs_embeds"]
        manual = model.get_input_embeddings()(inputs["input_ids"]).clone()
        manual[inputs["input_ids"] == cfg.image_token_index] = image_features
        assert torch.equal(manual, embeds)
        tensors = {
            "pixel_values": flat,
            "frame_features": frame_features,
            "image_features": image_features,
            "image_newline": model.model.image_newline,
            "inputs_embeds": embeds,
            "logits.last": out.logits[0, -1].clone(),
        }
        if L <= 512:
            tensors["logits"] = out.logits
        for i in range(cfg.text_config.num_hidden_layers):
            tensors[f"layers.{i}.key"], tensors[f"layers.{i}.value"] = cache_kv(out.past_key_values, i)
            tensors[f"layers.{i}.colsum"] = out.attentions[i][0].sum(dim=1)
        margins: list[float] = []
        gen1, last = greedy(model, out, NEW_TOKENS, margins)
        case = {
            "model": name,
            "model_dir": f"test/fixtures/models/{name}",
            "image_files": files,
            "image_sizes": sizes,
            "frames_per_image": patches,
            "feature_rows_per_image": [int(p.shape[0]) for p in packed],
            "messages": [user1],
            "prompt": prompt,
            "input_ids": ids,
            "image_token_id": cfg.image_token_index,
            "greedy_tokens": gen1,
        }
        if len(spec["messages"]) > 1:
            answer = streamed_answer(tok, gen1)
            assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
            user2 = {"role": "user", "content": spec["messages"][1]}
            mark = "\x00MARK\x00"
            marked = processor.apply_chat_template([user1, {"role": "assistant", "content": [{"type": "text", "text": mark}]}], add_generation_prompt=False, tokenize=False)
            fed = marked[: marked.index(mark)] + answer
            prompt2 = processor.apply_chat_template([user1, assistant, user2], add_generation_prompt=True, tokenize=False)
            assert prompt2.startswith(fed), (prompt2, fed)
            ids2 = tok(prompt2[len(fed):], add_special_tokens=False)["input_ids"]
            second = model(input_ids=torch.tensor([ids2]), past_key_values=last.past_key_values, use_cache=True)
            gen2, _ = greedy(model, second, NEW_TOKENS, margins)
            case.update({"turns": [m[-1]["text"] for m in spec["messages"]], "answer1": answer, "prompt2": prompt2, "ids2": ids2, "generated2": gen2})
    case["greedy_min_margin"] = min(margins)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    case["tensors"] = {k: list(v.shape) for k, v in sorted(tensors.items())}
    case["versions"] = {k: version(k) for k in ("torch", "transformers", "tokenizers", "pillow")}
    out_dir = PARITY / name
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / f"{case_name}.safetensors"), metadata={"format": "pt"})
    (out_dir / f"{case_name}.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"  {case_name}: L={L} sizes={sizes} frames={patches} rows={case['feature_rows_per_image']} margin={min(margins):.4f}")


def record_layouts() -> None:
    """transformers' own any-resolution arithmetic on many image sizes, no pixels: per config and
    size the pinpoint (select_best_resolution), the tiles (image_size_to_num_patches), the feature
    rows `pack_image_features` makes of zero features (the model's count) and the processor's
    `_get_number_of_features` (the prompt's), for llava-v1.6's and llava-onevision's real settings
    and ours."""
    from types import SimpleNamespace

    import numpy as np
    from transformers.image_processing_utils import select_best_resolution
    from transformers.models.llava_next.modeling_llava_next import LlavaNextModel, image_size_to_num_patches
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

    rng = np.random.default_rng(17)
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 4000, size=(120, 2))]
    sizes += [(int(w), int(h)) for w, h in rng.integers(1, 200, size=(80, 2))]
    sizes += [(336, 336), (672, 336), (336, 672), (1, 1), (1, 3000), (3000, 1), (1008, 336), (999, 1001), (384, 384), (2304, 2304), (5000, 700), (700, 5000)]
    configs = [
        {"name": "llava-v1.6 (336 / 14, CLIP)", "onevision": False, "image_size": 336, "patch_size": 14, "pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], "strategy": "default"},
        {"name": "tiny-llava-next", "onevision": False, "image_size": 32, "patch_size": 8, "pinpoints": NEXT_PINPOINTS, "strategy": "default"},
        {"name": "llava-onevision (384 / 14, SigLIP)", "onevision": True, "image_size": 384, "patch_size": 14, "pinpoints": [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)], "strategy": "full", "aspect": "anyres_max_9"},
        {"name": "onevision anyres_max_4", "onevision": True, "image_size": 384, "patch_size": 14, "pinpoints": [[384 * i, 384 * j] for i in range(1, 4) for j in range(1, 4)], "strategy": "full", "aspect": "anyres_max_4"},
        {"name": "tiny-llava-onevision", "onevision": True, "image_size": 24, "patch_size": 6, "pinpoints": ONEVISION_PINPOINTS, "strategy": "full", "aspect": "anyres_max_9"},
    ]
    out = []
    for cfg in configs:
        S, p = cfg["image_size"], cfg["patch_size"]
        grid = S // p
        model_config = SimpleNamespace(vision_config=SimpleNamespace(image_size=S, patch_size=p), image_grid_pinpoints=cfg["pinpoints"])
        fake = SimpleNamespace(config=model_config)
        if cfg["onevision"]:
            proc = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=cfg["pinpoints"]), num_image_tokens=grid * grid, vision_aspect_ratio=cfg["aspect"])
            proc._get_unpadded_features = lambda *a, _p=proc: LlavaOnevisionProcessor._get_unpadded_features(_p, *a)
            count = lambda h, w, _p=proc: LlavaOnevisionProcessor._get_number_of_features(_p, h, w, S, S)
        else:
            proc = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=cfg["pinpoints"]), patch_size=p, num_additional_image_tokens=1)
            proc._get_unpadded_features = lambda *a, _p=proc: LlavaNextProcessor._get_unpadded_features(_p, *a)
            count = lambda h, w, _p=proc: LlavaNextProcessor._get_number_of_features(_p, h, w, S, S) - 1
        cases = []
        for w, h in sizes:
            best = select_best_resolution((h, w), cfg["pinpoints"])
            frames = image_size_to_num_patches((h, w), cfg["pinpoints"], S)
            features = [torch.zeros(frames, grid * grid, 1)]
            if cfg["onevision"]:
                packed, lens = LlavaOnevisionModel.pack_image_features(fake, features, torch.tensor([[h, w]]), image_newline=torch.zeros(1), vision_aspect_ratio=cfg["aspect"])
            else:
                packed, lens = LlavaNextModel.pack_image_features(fake, features, torch.tensor([[h, w]]), cfg["strategy"], image_newline=torch.zeros(1))
            rows = int(lens[0])
            assert rows == count(h, w), (cfg["name"], w, h, rows, count(h, w))
            cases.append({"width": w, "height": h, "best": [best[1], best[0]], "frames": frames, "tokens": rows})
        out.append({"config": cfg, "cases": cases})
    (PARITY / "llava-next-layouts.json").write_text(json.dumps(out) + "\n")
    print(f"  llava-next-layouts.json: {len(configs)} configs x {len(sizes)} sizes")


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if sys.argv[1:] == ["--layouts"]:
        record_layouts()
        return 0
    for name, make, cls, seed, cases in (
        ("tiny-llava-next", make_next, LlavaNextForConditionalGeneration, 3141, CASES),
        ("tiny-llava-onevision", make_onevision, LlavaOnevisionForConditionalGeneration, 2718, CASES),
        ("tiny-llava-next-siglip", make_next_siglip, LlavaNextForConditionalGeneration, 1618, VARIANT_CASES),
        ("tiny-llava-onevision-clip", make_onevision_clip, LlavaOnevisionForConditionalGeneration, 1414, VARIANT_CASES),
    ):
        made = make(name, seed)
        # LLaVA-NeXT's processor as the checkpoint folder holds it; OneVision's as made (its reload needs the video processor).
        processor = AutoProcessor.from_pretrained(MODELS / name) if cls is LlavaNextForConditionalGeneration else made
        if (PARITY / name).exists():
            shutil.rmtree(PARITY / name)
        for case_name, spec in cases.items():
            record(name, cls, processor, case_name, spec)
    record_layouts()
    return 0


if __name__ == "__main__":
    sys.exit(main())
