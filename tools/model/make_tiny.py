#!/usr/bin/env python3
"""Generate the tiny, random, seeded LLaVA checkpoints used by the TypeScript runtime tests.

Purpose
-------
Writes two complete Hugging Face checkpoint folders (config, weights, tokenizer, image
processor, processor config, generation config) that
`transformers.LlavaForConditionalGeneration.from_pretrained(dir)` and
`transformers.AutoProcessor.from_pretrained(dir)` load as-is, plus two small PNG images:

* test/fixtures/models/tiny-llava-llama/  CLIP vision tower (feature layer -2, strategy
  "default" -> CLS dropped), Llama text model (MHA, untied lm_head, vocab padded past the
  tokenizer), F32, ONE model.safetensors with the LEGACY llava-hf key names
  (`language_model.model.*`, `language_model.lm_head.weight`, `vision_tower.*`,
  `multi_modal_projector.*`).
* test/fixtures/models/tiny-llava-qwen2/  SigLIP vision tower (feature layer -1, strategy
  "full"), Qwen2 text model (GQA, qkv bias, linear RoPE scaling x2, tied embeddings), F16,
  two shards + model.safetensors.index.json with the CURRENT transformers key names
  (`model.language_model.*`, `model.vision_tower.*`, `model.multi_modal_projector.*`; no
  `lm_head.weight` because it is tied to the embeddings).
* test/fixtures/images/red-square.png (48x40) and blue-circle.png (40x56).

Every weight is drawn from torch.manual_seed-ed generators (1-D norm weights around 1 and
non-zero biases on purpose, so a runtime that ignores them fails the parity tests), the
byte-level BPE tokenizer is trained deterministically on the corpus embedded below, and
re-running the script rewrites byte-identical files.

How to run (from the repository root)
-------------------------------------
    pip install -r tools/model/requirements.txt
    python3 tools/model/make_tiny.py
    python3 tools/model/record_fixtures.py

The outputs are committed, so `npm test` never runs Python; rerun these only when the
fixtures must change.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipImageProcessor,
    SiglipVisionConfig,
)
from transformers.generation import GenerationConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
IMAGES = REPO / "test" / "fixtures" / "images"

TOKENIZER_VOCAB = 400  # tokens in tokenizer.json, special tokens included
IMAGE_SIZE = 32
PATCH_SIZE = 8

# LLaVA-1.5 style: "USER: <image>\n<image>\nQuestion? ASSISTANT: answer</s>".
# Content items are rendered in order: image -> "<image>\n", text -> its text.
# Messages are joined by a single space; an assistant turn ends with eos_token.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first %} {% endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- else -%}"
    "{{ message['role'] | upper }}{{ ': ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)

# Fixed training corpus for the byte-level BPE (English, about images and questions).
CORPUS = """\
USER: What is in the first image? ASSISTANT: The first image shows a red square on a light background.
USER: What is in the second image? ASSISTANT: The second image shows a blue circle in the middle of the picture.
USER: Describe the picture. ASSISTANT: The picture is a small drawing with simple shapes and flat colors.
USER: How many images are there? ASSISTANT: There are two images in this conversation.
USER: What color is the square? ASSISTANT: The square is red. It sits near the center of the image.
USER: What color is the circle? ASSISTANT: The circle is blue. It is round and it is smaller than the frame.
USER: Compare the two images. ASSISTANT: The first one has a square and the second one has a circle.
A screenshot of a code editor shows a function, a variable and a comment in the middle of the screen.
The model reads the image, then it answers the question about the image in a short sentence.
Vision and language models look at pictures and text at the same time and write an answer.
The cat is sitting on the mat next to the window, and the dog is sleeping in the sun.
There is a green tree, a yellow house, a white cloud and a grey road in the painting.
Please look at the screenshot and tell me what the error message says and how to fix it.
The table has three rows and four columns; the first column lists the names of the files.
What is the text at the top of the page? The title of the page is written in large letters.
Where is the button? The button is in the lower right corner, below the input field.
Is there a person in the photo? No, there is no person; the photo shows only a landscape.
The quick brown fox jumps over the lazy dog while the children watch from the garden.
Explain what this chart means: the line goes up in the spring and down in the winter.
The answer is yes. The answer is no. The answer is maybe, it depends on the context.
Shapes: square, circle, triangle, rectangle, line, point, star, heart and arrow.
Colors: red, green, blue, yellow, orange, purple, black, white, grey and brown.
Numbers: one, two, three, four, five, six, seven, eight, nine, ten, 0 1 2 3 4 5 6 7 8 9.
"""

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ----------------------------------------------------------------------------- tokenizer


def build_tokenizer(image_token_inside: bool, add_bos: bool) -> PreTrainedTokenizerFast:
    """Byte-level BPE with exactly TOKENIZER_VOCAB tokens.

    image_token_inside=False: ids <pad>=0 <s>=1 </s>=2, 3..398 bytes+merges, <image>=399
      (appended after training like llava-hf's <image>=32000).
    image_token_inside=True:  ids <pad>=0 <s>=1 </s>=2 <image>=3, then bytes+merges.
    add_bos: the post-processor prepends <s> (Llama-like); otherwise nothing is added (Qwen-like).
    """
    specials = ["<pad>", "<s>", "</s>"] + (["<image>"] if image_token_inside else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB if image_token_inside else TOKENIZER_VOCAB - 1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    lines = CORPUS.splitlines()
    tok.train_from_iterator(lines * 4, trainer=trainer)
    if not image_token_inside:
        tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False)])
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A:0", pair="<s> $A:0 <s> $B:1", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.get_vocab_size(with_added_tokens=True) == TOKENIZER_VOCAB, tok.get_vocab_size(True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token=None,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids (generate rejects them)
    )
    return fast


# ----------------------------------------------------------------------------- weights


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic re-initialisation of every parameter (sorted by name).

    matrices/embeddings: N(0, 1/fan_in) so activations and logits stay O(1) (clear argmax
    margins); norm weights: 1 + 0.1 N(0,1); biases and other 1-D params: 0.05 N(0,1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if p.dim() == 1:
                is_norm = "norm" in name or "layrnorm" in name
                if is_norm and name.endswith("weight"):
                    v = 1.0 + 0.1 * torch.randn(shape, generator=g)
                else:
                    v = 0.05 * torch.randn(shape, generator=g)
            else:
                fan_in = int(math.prod(shape[1:]))
                v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
            p.copy_(v.to(p.dtype))


# ----------------------------------------------------------------------------- images


def write_images() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    # 48 wide x 40 high: diagonal gradient background, red square, a dark stripe.
    w, h = 48, 40
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (200 + (x * 55) // w, 220 - (y * 60) // h, 180 + ((x + y) * 40) // (w + h))
    d = ImageDraw.Draw(img)
    d.rectangle([12, 8, 35, 31], fill=(220, 20, 30))
    d.line([0, 38, 47, 30], fill=(30, 30, 30), width=2)
    img.save(IMAGES / "red-square.png", format="PNG", optimize=False, compress_level=9)

    # 40 wide x 56 high: vertical gradient, blue circle, a small yellow dot.
    w, h = 40, 56
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (230 - (y * 90) // h, 235 - (x * 30) // w, 120 + (y * 100) // h)
    d = ImageDraw.Draw(img)
    d.ellipse([6, 14, 33, 41], fill=(25, 60, 210), outline=(10, 20, 90), width=2)
    d.ellipse([30, 3, 36, 9], fill=(250, 220, 40))
    img.save(IMAGES / "blue-circle.png", format="PNG", optimize=False, compress_level=9)


# ----------------------------------------------------------------------------- checkpoints


def llama_config(image_token_index: int) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_channels=3,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=416,  # padded past the 400-token tokenizer, like llava-1.5 (32064 vs 32002)
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        hidden_act="silu",
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=image_token_index,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=16,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
        pad_token_id=0,
    )


def qwen2_config(image_token_index: int) -> LlavaConfig:
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_channels=3,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    )
    text = Qwen2Config(
        vocab_size=TOKENIZER_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=image_token_index,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_seq_length=16,
        multimodal_projector_bias=True,
        tie_word_embeddings=True,
        pad_token_id=0,
    )


def clip_image_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": IMAGE_SIZE},
        resample=3,  # PIL BICUBIC
        do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def siglip_image_processor() -> SiglipImageProcessor:
    return SiglipImageProcessor(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3,  # PIL BICUBIC
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )


def sample_inputs(processor: LlavaProcessor):
    images = [Image.open(IMAGES / "red-square.png"), Image.open(IMAGES / "blue-circle.png")]
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is in the second image?"}],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(images=images, text=prompt, return_tensors="pt")


def check_reload(out_dir: Path, model: LlavaForConditionalGeneration, expected_keys: set[str]) -> None:
    """Reload with transformers and compare with the in-memory model."""
    stored = set()
    for f in sorted(out_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            stored |= set(sf.keys())
    assert stored == expected_keys, (sorted(stored ^ expected_keys))[:20]

    reloaded, info = LlavaForConditionalGeneration.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading info not clean: {bad}"
    reloaded.eval()
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k].float(), sd_b[k].float()), k

    processor = AutoProcessor.from_pretrained(out_dir)
    assert isinstance(processor, LlavaProcessor), type(processor)
    inputs = sample_inputs(processor)
    n_img = int((inputs["input_ids"] == model.config.image_token_index).sum())
    assert n_img == 2 * 16, n_img
    with torch.no_grad():
        a = model(**inputs).logits
        b = reloaded(**inputs).logits
    assert torch.equal(a, b), (a - b).abs().max()
    print(f"  reload OK: {len(expected_keys)} tensors, logits identical, input length {inputs['input_ids'].shape[1]}")


def save_processor(out_dir: Path, tokenizer, image_processor, strategy: str, num_additional: int) -> None:
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy=strategy,
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=num_additional,
    )
    # save_jinja_files=False: chat template inline in tokenizer_config.json and chat_template.json
    processor.save_pretrained(out_dir, save_jinja_files=False)


def make_llama() -> None:
    out_dir = MODELS / "tiny-llava-llama"
    print(f"[tiny-llava-llama] -> {out_dir.relative_to(REPO)}")
    tokenizer = build_tokenizer(image_token_inside=False, add_bos=True)
    image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    assert image_token_index == TOKENIZER_VOCAB - 1
    config = llama_config(image_token_index)
    torch.manual_seed(1234)
    model = LlavaForConditionalGeneration(config)
    init_weights(model, seed=1234)
    model.set_attn_implementation("eager")
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)

    fresh_dir(out_dir)
    # transformers 4.57 save_pretrained already reverses LlavaForConditionalGeneration's
    # _checkpoint_conversion_mapping for VLMs, i.e. it writes the legacy llava-hf names.
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="1GB")
    save_processor(out_dir, tokenizer, clip_image_processor(), "default", num_additional=1)

    legacy = set()
    for k in model.state_dict():
        for new, old in (
            ("model.language_model.", "language_model.model."),
            ("model.vision_tower.", "vision_tower."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
            ("lm_head.", "language_model.lm_head."),
        ):
            if k.startswith(new):
                legacy.add(old + k[len(new) :])
                break
        else:
            raise AssertionError(k)
    assert (out_dir / "model.safetensors").exists() and not (out_dir / "model.safetensors.index.json").exists()
    check_reload(out_dir, model, legacy)


def make_qwen2() -> None:
    out_dir = MODELS / "tiny-llava-qwen2"
    print(f"[tiny-llava-qwen2] -> {out_dir.relative_to(REPO)}")
    tokenizer = build_tokenizer(image_token_inside=True, add_bos=False)
    image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    assert image_token_index == 3
    config = qwen2_config(image_token_index)
    torch.manual_seed(4321)
    model = LlavaForConditionalGeneration(config)
    init_weights(model, seed=4321)
    # The checkpoint is stored as F16; round the F32 weights through F16 so the in-memory
    # model equals what from_pretrained(dtype=float32) reads back.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.set_attn_implementation("eager")
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)

    fresh_dir(out_dir)
    half = LlavaForConditionalGeneration(config).eval()
    half.load_state_dict(model.state_dict())
    half = half.to(torch.float16)
    half.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    # Write the current (4.57 in-memory) key names instead of the legacy ones that
    # save_pretrained would produce for a VLM: an empty conversion mapping disables the
    # reverse renaming.
    half._checkpoint_conversion_mapping = {}
    total = sum(t.numel() * t.element_size() for k, t in half.state_dict().items() if k != "lm_head.weight")
    half.save_pretrained(out_dir, safe_serialization=True, max_shard_size=int(total * 0.6))
    save_processor(out_dir, tokenizer, siglip_image_processor(), "full", num_additional=0)

    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], shards
    expected = {k for k in model.state_dict() if k != "lm_head.weight"}
    for f in shards:
        with safe_open(str(out_dir / f), "pt") as sf:
            for k in sf.keys():
                assert sf.get_slice(k).get_dtype() == "F16", k
    check_reload(out_dir, model, expected)


def fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    write_images()
    make_llama()
    make_qwen2()
    for d in (MODELS / "tiny-llava-llama", MODELS / "tiny-llava-qwen2", IMAGES):
        for f in sorted(d.iterdir()):
            print(f"  {f.relative_to(REPO)}  {f.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
