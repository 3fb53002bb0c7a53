#!/usr/bin/env python3
"""Generate tiny, random, seeded Qwen2-VL and Qwen2.5-VL checkpoints (transformers' own classes).

Purpose
-------
Writes two complete Hugging Face checkpoint folders that
`Qwen2VLForConditionalGeneration` / `Qwen2_5_VLForConditionalGeneration.from_pretrained(dir)`
and the processor (tokenizer, `Qwen2VLImageProcessor`, chat template; `load_processor`) load as-is, plus the extra fixture images:

* test/fixtures/models/tiny-qwen2-vl/     Qwen2-VL: vision depth 2, embed_dim 32, 4 heads,
  mlp_ratio 4, quick_gelu, LayerNorm blocks, 2x2 patch merger; text Qwen2 with M-RoPE
  (mrope_section [2, 3, 3]), hidden 64, 2 layers, GQA 4/2, tied embeddings, vocab padded past
  the tokenizer; F32, one model.safetensors. min_pixels 3136, max_pixels 15680.
* test/fixtures/models/tiny-qwen2.5-vl/   Qwen2.5-VL: vision depth 2 (block 0 windowed with
  window_size 56, block 1 full: fullatt_block_indexes [1]), hidden 32, SwiGLU intermediate 48,
  RMSNorm, silu; text hidden 96, 6 heads / 2 KV heads, head_dim 16, untied lm_head; F16 in two
  shards. min_pixels 4704, max_pixels 23520.
* test/fixtures/images/qwen2vl/*.png      images of several sizes and aspect ratios (see
  write_images): below min_pixels, above max_pixels, already a multiple of 28, wide and tall.

Both use the chat template of Qwen2-VL-Instruct verbatim (Qwen2.5-VL-Instruct ships the same
one). Source: huggingface/transformers, tests/models/qwen2_vl/test_processing_qwen2_vl.py
(commit 1e051943f70c8243472811236ba8ccc7d7d1fcfd), `prepare_processor_dict`, which carries the
chat_template of "Qwen/Qwen2-VL-7B-Instruct"; the same string is in that checkpoint's
tokenizer_config.json and in Qwen2.5-VL configs' processor_config.

The byte-level BPE tokenizer (Qwen2's pre-tokenizer regex, NFC) is trained deterministically on
make_tiny.py's corpus; Qwen2's special tokens are appended after it, in Qwen2's order. Every
weight is drawn from seeded generators (make_tiny.init_weights), so re-running rewrites
byte-identical files.

How to run (from the repository root)
-------------------------------------
    /tmp/h8venv/bin/python tools/model/make_qwen2vl.py
    /tmp/h8venv/bin/python tools/model/record_qwen2vl.py

The outputs are committed, so `npm test` never runs Python.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from make_tiny import CORPUS, fresh_dir, init_weights  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
)
from transformers.generation import GenerationConfig  # noqa: E402
from transformers.processing_utils import ProcessorMixin  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
IMAGES = REPO / "test" / "fixtures" / "images"
QWEN_IMAGES = IMAGES / "qwen2vl"

# Verbatim: the chat_template of Qwen/Qwen2-VL-7B-Instruct (see the module docstring for the source).
CHAT_TEMPLATE = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"  # noqa: E501

# Qwen2's pre-tokenizer split (tokenizer.json of the Qwen2 / Qwen2-VL checkpoints).
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# Qwen2's added tokens, in Qwen2's order (151643...): the ones the template and the processor use.
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
BPE_VOCAB = 386  # trained tokens; the specials follow: 400 in all
TOKENIZER_VOCAB = BPE_VOCAB + len(SPECIALS)
CHAT_CORPUS = """\
You are a helpful assistant.
system user assistant
The screenshot shows a window with a title bar, a menu and a long list of files.
"""

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tokenizer() -> Qwen2TokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    lines = (CORPUS + CHAT_CORPUS).splitlines()
    tok.train_from_iterator(lines * 4, trainer=trainer)
    assert tok.get_vocab_size() == BPE_VOCAB, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    assert tok.get_vocab_size(with_added_tokens=True) == TOKENIZER_VOCAB
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        additional_special_tokens=SPECIALS[1:],
    )


def token_ids(tokenizer) -> dict[str, int]:
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    assert ids["<|endoftext|>"] == BPE_VOCAB
    return ids


# ----------------------------------------------------------------------------- images

# name -> (width, height); sizes chosen to take every branch of smart_resize for both checkpoints.
IMAGE_SPECS = {
    "wide-editor.png": (300, 90),  # above max_pixels (3.3:1): scaled down
    "tall-list.png": (60, 200),  # 1:3.3, tall
    "exact-112x56.png": (112, 56),  # already a multiple of 28 inside the pixel range: not resampled
    "tiny-icon.png": (20, 24),  # below min_pixels: scaled up
}


def write_images() -> None:
    QWEN_IMAGES.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in IMAGE_SPECS.items():
        seed = sum(map(ord, name))
        img = Image.new("RGB", (w, h))
        px = img.load()
        for y in range(h):
            for x in range(w):
                px[x, y] = ((x * 7 + seed) % 256, (y * 5 + 3 * seed) % 256, ((x ^ y) * 3 + seed) % 256)
        d = ImageDraw.Draw(img)
        # a few "UI" strokes: bars and boxes with hard edges
        for i in range(0, h, max(4, h // 8)):
            d.line([0, i, w - 1, i], fill=(20, 20, 20), width=1)
        d.rectangle([w // 5, h // 4, w // 2, (3 * h) // 4], fill=(240, 240, 230), outline=(10, 90, 200))
        d.ellipse([w // 2, h // 5, (4 * w) // 5, h // 2], fill=(200, 40, 40))
        img.save(QWEN_IMAGES / name, format="PNG", optimize=False, compress_level=9)


# ----------------------------------------------------------------------------- checkpoints


def qwen2vl_config(ids: dict[str, int]) -> Qwen2VLConfig:
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=64,  # the merger's output: the text hidden size
        hidden_act="quick_gelu",
        mlp_ratio=4,
        num_heads=4,
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    text = dict(
        vocab_size=416,  # padded past the 400-token tokenizer, like Qwen2-VL (151936 vs 151657)
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def qwen25vl_config(ids: dict[str, int]) -> Qwen2_5_VLConfig:
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=48,
        num_heads=4,
        out_hidden_size=96,
        hidden_act="silu",
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,  # 2 x 2 merged tokens (4 x 4 patches) per window
        fullatt_block_indexes=[1],
        tokens_per_second=2,
    )
    text = dict(
        vocab_size=TOKENIZER_VOCAB,
        hidden_size=96,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        tie_word_embeddings=False,
        use_sliding_window=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def image_processor(min_pixels: int, max_pixels: int) -> Qwen2VLImageProcessor:
    return Qwen2VLImageProcessor(
        do_resize=True,
        resample=3,  # PIL BICUBIC
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )


def sample_inputs(processor):
    images = [Image.open(IMAGES / "red-square.png").convert("RGB"), Image.open(QWEN_IMAGES / "wide-editor.png").convert("RGB")]
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Compare"}, {"type": "image"}, {"type": "text", "text": "these."}],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(images=images, text=prompt, return_tensors="pt")


def check_reload(cls, out_dir: Path, model, expected_keys: set[str], processor_cls) -> None:
    stored = set()
    for f in sorted(out_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            stored |= set(sf.keys())
    assert stored == expected_keys, sorted(stored ^ expected_keys)[:20]
    reloaded, info = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading info not clean: {bad}"
    reloaded.eval()
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k].float(), sd_b[k].float()), k
    processor = load_processor(out_dir)
    assert isinstance(processor, processor_cls), type(processor)
    assert processor.chat_template == CHAT_TEMPLATE
    inputs = sample_inputs(processor)
    with torch.no_grad():
        a = model(**inputs).logits
        b = reloaded(**inputs).logits
    assert torch.equal(a, b), (a - b).abs().max()
    grids = inputs["image_grid_thw"].tolist()
    print(f"  reload OK: {len(expected_keys)} tensors, logits identical, input length {inputs['input_ids'].shape[1]}, grids {grids}")


def _allow_no_video_processor() -> None:
    """Let the Qwen2-VL processors be built with video_processor=None.

    Their video processor needs torchvision, which this venv does not have (and images never use
    it). The image processor is the slow, PIL-based Qwen2VLImageProcessor that the Hub
    checkpoints name, so these are exactly the inputs a user without torchvision gets.
    """
    check = ProcessorMixin.check_argument_for_proper_class
    if getattr(check, "allows_no_video", False):
        return

    def patched(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return check(self, argument_name, argument)

    patched.allows_no_video = True
    ProcessorMixin.check_argument_for_proper_class = patched


def load_processor(model_dir: Path):
    """The checkpoint's processor as AutoProcessor would build it, minus the video processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    _allow_no_video_processor()
    config = json.loads((model_dir / "config.json").read_text())
    cls = Qwen2_5_VLProcessor if config["model_type"] == "qwen2_5_vl" else Qwen2VLProcessor
    template = json.loads((model_dir / "chat_template.json").read_text())["chat_template"]
    image_proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    assert type(image_proc) is Qwen2VLImageProcessor, type(image_proc)
    return cls(image_processor=image_proc, tokenizer=AutoTokenizer.from_pretrained(model_dir), video_processor=None, chat_template=template)


def save_processor(out_dir: Path, tokenizer, image_proc) -> None:
    """tokenizer files, preprocessor_config.json and chat_template.json, as the Hub checkpoints have them."""
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    image_proc.save_pretrained(out_dir)
    (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2, ensure_ascii=False) + "\n")
    tc = json.loads((out_dir / "tokenizer_config.json").read_text())
    assert tc["chat_template"] == CHAT_TEMPLATE


def hub_layout_config(out_dir: Path, architecture: str, flat: bool) -> None:
    """Rewrite config.json the way the Hub checkpoints have it.

    transformers 4.57 saves the text fields under text_config, puts `architectures` only there, and
    rewrites rope_scaling's "mrope" as "default". The published Qwen2-VL-Instruct configs are flat
    (the text fields at the top level, `"rope_scaling": {"type": "mrope", "mrope_section": [...]}`,
    the vision config's `in_chans`); Qwen2.5-VL configs saved by newer transformers keep
    text_config. Both load to the same model (check_reload verifies it).
    """
    path = out_dir / "config.json"
    cfg = json.loads(path.read_text())
    text = cfg["text_config"]
    text.pop("architectures", None)
    text["rope_scaling"] = {"type": "mrope", "mrope_section": text["rope_scaling"]["mrope_section"]}
    for key in ("layer_types", "dtype"):
        text.pop(key, None)
    out = {"architectures": [architecture], "model_type": cfg["model_type"]}
    if flat:
        vision = dict(cfg["vision_config"])
        vision["in_chans"] = vision.pop("in_channels")
        out.update({k: v for k, v in text.items() if k != "model_type"})
        out.update({k: v for k, v in cfg.items() if k not in ("text_config", "vision_config", "model_type")})
        out["vision_config"] = vision
    else:
        out.update({k: v for k, v in cfg.items() if k not in ("model_type",)})
    path.write_text(json.dumps(out, indent=2, sort_keys=False) + "\n")


def make(name: str, cls, config, processor_cls, image_proc, seed: int, half: bool, flat: bool) -> None:
    out_dir = MODELS / name
    print(f"[{name}] -> {out_dir.relative_to(REPO)}")
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = cls(config)
    init_weights(model, seed=seed)
    if half:  # stored as F16: round through F16 so the in-memory model equals what is read back as F32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    model.set_attn_implementation("eager")
    model.eval()
    gen = GenerationConfig(bos_token_id=config.text_config.bos_token_id, eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.bos_token_id)
    model.generation_config = gen
    fresh_dir(out_dir)
    writer = model
    if half:
        writer = cls(config).eval()
        writer.load_state_dict(model.state_dict())
        writer = writer.to(torch.float16)
        writer.generation_config = gen
    tied = config.tie_word_embeddings
    total = sum(t.numel() * t.element_size() for k, t in writer.state_dict().items() if not (tied and k == "lm_head.weight"))
    writer.save_pretrained(out_dir, safe_serialization=True, max_shard_size=int(total * 0.6) if half else "1GB")
    save_processor(out_dir, tokenizer, image_proc)
    hub_layout_config(out_dir, cls.__name__, flat)
    # transformers 4.57 saves the Qwen2-VL families with their published (legacy) names:
    # model.* for the language model and visual.* for the vision tower.
    expected = set()
    for k in model.state_dict():
        if tied and k == "lm_head.weight":
            continue
        if k.startswith("model.language_model."):
            expected.add("model." + k[len("model.language_model.") :])
        elif k.startswith("model.visual."):
            expected.add("visual." + k[len("model.visual.") :])
        else:
            expected.add(k)
    check_reload(cls, out_dir, model, expected, processor_cls)


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    write_images()
    ids = token_ids(build_tokenizer())
    make("tiny-qwen2-vl", Qwen2VLForConditionalGeneration, qwen2vl_config(ids), Qwen2VLProcessor, image_processor(56 * 56, 28 * 28 * 20), 2024, half=False, flat=True)
    make("tiny-qwen2.5-vl", Qwen2_5_VLForConditionalGeneration, qwen25vl_config(ids), Qwen2_5_VLProcessor, image_processor(28 * 28 * 6, 28 * 28 * 30), 2025, half=True, flat=False)
    for d in (MODELS / "tiny-qwen2-vl", MODELS / "tiny-qwen2.5-vl", QWEN_IMAGES):
        for f in sorted(d.iterdir()):
            print(f"  {f.relative_to(REPO)}  {f.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
