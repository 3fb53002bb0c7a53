#!/usr/bin/env python3
"""Tiny seeded SmolVLM (Idefics3) checkpoints and transformers' reference outputs on them.

Purpose
-------
Writes two checkpoint folders that `transformers.Idefics3ForConditionalGeneration` and
`AutoProcessor` (`Idefics3Processor`) load as-is, the fixture images they read, and the
parity fixtures the TypeScript port is tested against:

* test/fixtures/models/tiny-smolvlm/  SigLIP-like tower 48 x 48 / patch 8 (a 6 x 6 grid),
  pixel shuffle scale_factor 2 (9 tokens per tile), Llama text model (MHA, untied lm_head,
  vocab padded past the tokenizer), image splitting on: size.longest_edge 192 and
  max_image_size.longest_edge 48, so an image becomes up to 4 x 4 tiles plus the global image.
* test/fixtures/models/tiny-smolvlm-nosplit/  tower 36 x 36 / patch 6, scale_factor 3 (4 tokens
  per image), Llama with GQA and tied embeddings, do_image_splitting false (every image is one
  global image resized to max_image_size x max_image_size).

Both use SmolVLM-Instruct's chat template verbatim (CHAT_TEMPLATE below: the template of
HuggingFaceTB/SmolVLM-256M-Instruct / -500M-Instruct, as transformers' own test
tests/models/smolvlm/test_processing_smolvlm.py `prepare_processor_dict` spells it) and a
tokenizer with SmolVLM's added tokens (`<fake_token_around_image>`, `<image>`,
`<end_of_utterance>`, `<global-img>`, `<row_R_col_C>` for R, C in 1..6; `<|im_start|>` is BOS
and written by the template, the tokenizer adds nothing).

test/fixtures/parity/<name>/<case>.json + <case>.safetensors, one per case (see CASES): the
messages, the rendered prompt, the expanded input ids, the tile rows and columns per image, the
processor's pixel values (and the PIL-resized uint8 frames before rescale/normalise, to compare
the TypeScript resampling with), the vision tower's output, the connector's image features,
the merged prompt embeddings, the prompt logits, every layer's keys, values (post-RoPE) and
attention column sums, and 32 greedy tokens (argmax, EOS not stopping). The "conversation"
case is two greedy turns on one uninterrupted cache, turn 2 fed as `Conversation` feeds it.

How to run (from the repository root)
-------------------------------------
    /path/to/venv/bin/python tools/model/make_smolvlm.py

Deterministic (seeded weights, CPU, one thread); the outputs are committed and `npm test` never
runs Python.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    LlamaConfig,
    PreTrainedTokenizerFast,
)
from transformers.generation import GenerationConfig  # noqa: E402

import make_tiny  # noqa: E402  (the shared corpus and the seeded initialisation)
from recording import cache_kv, forward_capturing  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
IMAGES = REPO / "test" / "fixtures" / "images"
NEW_TOKENS = 32

# HuggingFaceTB/SmolVLM-256M-Instruct and SmolVLM-500M-Instruct chat_template.json, verbatim
# (transformers tests/models/smolvlm/test_processing_smolvlm.py, prepare_processor_dict).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

TRAINED_VOCAB = 400
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]

# Fixture images (name: width, height): several sizes and aspect ratios, up- and downscaled.
IMAGE_SPECS = {
    "wide-code.png": (150, 56),  # wide: 1 x 4 tiles at longest_edge 192 / tile 48
    "tall-bars.png": (40, 110),  # tall: 4 x 2 tiles
    "small-dot.png": (20, 20),  # square and small: upscaled, 4 x 4 tiles
    "large-grid.png": (300, 220),  # larger than longest_edge: downscaled, 3 x 4 tiles
}

LONG_TEXT = " ".join(make_tiny.CORPUS.splitlines()[7:])  # a few hundred tokens of plain text


def case_specs(split: bool) -> dict[str, dict]:
    """The recorded cases: name -> {images, messages (the user turns), turns}."""
    two = {
        "images": ["wide-code.png", "tall-bars.png"],
        "messages": [[{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is in the second image?"}]],
    }
    cases = {
        "two-images": two,
        "small-square": {
            "images": ["small-dot.png"],
            "messages": [[{"type": "text", "text": "Describe the picture."}, {"type": "image"}]],
        },
        # Longer than one 512-token prefill chunk.
        "long": {
            "images": ["large-grid.png"],
            "messages": [[{"type": "image"}, {"type": "text", "text": LONG_TEXT}]],
        },
        "conversation": {
            "images": ["large-grid.png"],
            "messages": [
                [{"type": "image"}, {"type": "text", "text": "What is in the image?"}],
                [{"type": "text", "text": "What color is the square?"}],
            ],
        },
    }
    if not split:
        del cases["small-square"]
    return cases


# ----------------------------------------------------------------------------- images


def write_images() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in IMAGE_SPECS.items():
        img = Image.new("RGB", (w, h))
        px = img.load()
        for y in range(h):
            for x in range(w):
                px[x, y] = ((x * 255) // w, (y * 255) // h, (((x // 5) + (y // 7)) % 2) * 160 + 40)
        d = ImageDraw.Draw(img)
        if name == "wide-code.png":
            for row in range(4):
                d.line([6, 8 + row * 12, 40 + row * 25, 8 + row * 12], fill=(250, 250, 250), width=3)
        elif name == "tall-bars.png":
            for k in range(5):
                d.rectangle([4, 6 + k * 21, 8 + k * 6, 16 + k * 21], fill=(20, 200 - k * 30, 60))
        elif name == "small-dot.png":
            d.ellipse([5, 5, 14, 14], fill=(240, 30, 30))
        else:
            for k in range(0, w, 30):
                d.line([k, 0, k, h - 1], fill=(10, 10, 10), width=2)
            d.rectangle([100, 60, 180, 140], fill=(220, 20, 30))
        img.save(IMAGES / name, format="PNG", optimize=False, compress_level=9)


# ----------------------------------------------------------------------------- checkpoints


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE: <|endoftext|>=0 <|im_start|>=1 <|im_end|>=2, bytes+merges, then SmolVLM's added tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    lines = (make_tiny.CORPUS + "User: Assistant: <end_of_utterance>\n").splitlines()
    tok.train_from_iterator(lines * 4, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in IMAGE_TOKENS])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # like SmolLM2's: no BOS added
    assert tok.get_vocab_size(with_added_tokens=True) == TRAINED_VOCAB + len(IMAGE_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
        additional_special_tokens=IMAGE_TOKENS,
    )


def make_checkpoint(name: str, *, split: bool, seed: int) -> None:
    out_dir = MODELS / name
    print(f"[{name}] -> {out_dir.relative_to(REPO)}")
    tokenizer = build_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if split:
        image_size, patch, scale = 48, 8, 2
        text = dict(num_key_value_heads=4, tie_word_embeddings=False, rope_theta=10000.0)
        proc = dict(size={"longest_edge": 4 * 48}, max_image_size={"longest_edge": 48}, do_image_splitting=True)
    else:
        image_size, patch, scale = 36, 6, 3
        text = dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=100000.0)
        proc = dict(size={"longest_edge": 4 * 36}, max_image_size={"longest_edge": 36}, do_image_splitting=False)
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_channels=3,
            image_size=image_size, patch_size=patch, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
        ),
        text_config=LlamaConfig(
            vocab_size=448, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            head_dim=16, hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-5,
            attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=2, **text,
        ).to_dict(),
        scale_factor=scale,
        image_token_id=image_token_id,
        tie_word_embeddings=text["tie_word_embeddings"],
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    make_tiny.init_weights(model, seed=seed)
    model.eval()
    eos = [2, tokenizer.convert_tokens_to_ids("<end_of_utterance>")]
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=eos, pad_token_id=2)
    make_tiny.fresh_dir(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    image_processor = Idefics3ImageProcessor(
        do_convert_rgb=True, do_resize=True, resample=1,  # PIL LANCZOS, as SmolVLM's preprocessor_config.json
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5], do_pad=True, **proc,
    )
    image_seq_len = (image_size // patch) ** 2 // scale**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                                  chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out_dir, save_jinja_files=False)
    reloaded = Idefics3ForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k


# ----------------------------------------------------------------------------- fixtures


def streamed_answer(tokenizer, ids: list[int]) -> str:
    """The answer text as `Conversation` keeps it: a trailing partial UTF-8 character held back, one leading space dropped."""
    text = ""
    for n in range(1, len(ids) + 1):
        decoded = tokenizer.decode(ids[:n], skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):
            text = decoded
    return text[1:] if text.startswith(" ") else text


def resized_frames(ip: Idefics3ImageProcessor, image: Image.Image) -> list[np.ndarray]:
    """The uint8 frames (tiles, then the global image) before rescale/normalise, as preprocess makes them."""
    arr = np.array(image.convert("RGB"))
    if ip.do_resize:
        arr = ip.resize(arr, size=ip.size, resample=ip.resample)
    if not ip.do_image_splitting:
        m = ip.max_image_size["longest_edge"]
        return [ip.resize(arr, size={"height": m, "width": m}, resample=ip.resample)]
    arr = ip.resize_for_vision_encoder(arr, ip.max_image_size["longest_edge"], resample=ip.resample)
    frames, _, _ = ip.split_image(arr, max_image_size=ip.max_image_size, resample=ip.resample)
    return frames


def greedy(model, out, count: int, margins: list[float] | None = None):
    ids: list[int] = []
    cache, logits = out.past_key_values, out.logits[0, -1]
    for _ in range(count):
        nxt = int(logits.argmax())
        ids.append(nxt)
        if margins is not None:
            top2 = logits.topk(2).values
            margins.append(float(top2[0] - top2[1]))
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[0, -1]
    return ids, out


def record(name: str, case_name: str, spec: dict) -> None:
    model_dir = MODELS / name
    model = Idefics3ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    cfg = model.config
    tcfg = cfg.text_config
    lm = model.model.text_model
    files = [f"test/fixtures/images/{f}" for f in spec["images"]]
    images = [Image.open(REPO / f).convert("RGB") for f in files]
    user1 = {"role": "user", "content": spec["messages"][0]}
    prompt = processor.apply_chat_template([user1], add_generation_prompt=True, tokenize=False)
    inputs = processor(images=images, text=prompt, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    L = len(ids)
    pixel_values = inputs["pixel_values"]
    assert bool(inputs["pixel_attention_mask"].all()), "every frame is full size: no padding inside a batch of one prompt"
    ip = processor.image_processor
    frames = [f for img in images for f in resized_frames(ip, img)]
    with torch.no_grad():
        flat = pixel_values.view(-1, *pixel_values.shape[2:])
        expected = torch.stack([torch.from_numpy(((fr.astype(np.float32) / 255) - 0.5) / 0.5).permute(2, 0, 1) for fr in frames])
        assert (expected - flat).abs().max().item() < 1e-6, "resized_frames reproduces the processor"
        vision = model.model.vision_model(pixel_values=flat).last_hidden_state
        image_features = model.model.get_image_features(pixel_values=pixel_values)
        assert torch.equal(image_features, model.model.connector(vision))
        out, captured = forward_capturing(model, lm, inputs)
        embeds = captured["inputs_embeds"]
        manual = model.get_input_embeddings()(inputs["input_ids"]).clone()
        manual[inputs["input_ids"] == cfg.image_token_id] = image_features.reshape(-1, image_features.shape[-1])
        assert torch.equal(manual, embeds)
        tensors = {
            "pixel_values": flat,
            "vision_features": vision,
            "image_features": image_features,
            "inputs_embeds": embeds,
            "logits.last": out.logits[0, -1].clone(),
        }
        if L <= 512:  # the long cases keep the last row only (size); their K/V and column sums cover every row
            tensors["logits"] = out.logits
        for i, fr in enumerate(frames):
            tensors[f"frames.{i}"] = torch.from_numpy(np.ascontiguousarray(fr))  # uint8 [h, w, 3]
        for i in range(tcfg.num_hidden_layers):
            k, v = cache_kv(out.past_key_values, i)
            tensors[f"layers.{i}.key"] = k
            tensors[f"layers.{i}.value"] = v
            tensors[f"layers.{i}.colsum"] = out.attentions[i][0].sum(dim=1)
        margins: list[float] = []
        gen1, last = greedy(model, out, NEW_TOKENS, margins)
        ref = model.generate(**inputs, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        # generate's min_new_tokens masks EOS; the hand loop does not. Equal unless an EOS was argmax.
        same_as_generate = ref[0, L:].tolist() == gen1
        case = {
            "model": name,
            "model_dir": f"test/fixtures/models/{name}",
            "image_files": files,
            "messages": [user1],
            "prompt": prompt,
            "input_ids": ids,
            "image_token_id": cfg.image_token_id,
            "frames_per_image": [len(resized_frames(ip, img)) for img in images],
            "image_seq_len": processor.image_seq_len,
            "greedy_tokens": gen1,
            "greedy_equals_generate": same_as_generate,
        }
        if len(spec["messages"]) > 1:
            answer = streamed_answer(tok, gen1)
            assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
            user2 = {"role": "user", "content": spec["messages"][1]}
            mark = "\x00MARK\x00"
            marked = processor.apply_chat_template([user1, {"role": "assistant", "content": [{"type": "text", "text": mark}]}],
                                                   add_generation_prompt=False, tokenize=False)
            fed = marked[: marked.index(mark)] + answer
            prompt2 = processor.apply_chat_template([user1, assistant, user2], add_generation_prompt=True, tokenize=False)
            assert prompt2.startswith(fed), (prompt2, fed)
            ids2 = tok(prompt2[len(fed):], add_special_tokens=False)["input_ids"]
            second = model(input_ids=torch.tensor([ids2]), past_key_values=last.past_key_values, use_cache=True)
            gen2, _ = greedy(model, second, NEW_TOKENS, margins)
            case.update({"turns": [m[-1]["text"] for m in spec["messages"]], "answer1": answer, "prompt2": prompt2,
                         "ids2": ids2, "generated2": gen2})
    case["greedy_min_margin"] = min(margins)
    tensors = {k: v.detach().contiguous() if v.dtype == torch.uint8 else v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    case["tensors"] = {k: list(v.shape) for k, v in sorted(tensors.items())}
    case["versions"] = {k: version(k) for k in ("torch", "transformers", "tokenizers", "pillow")}
    out_dir = PARITY / name
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / f"{case_name}.safetensors"), metadata={"format": "pt"})
    (out_dir / f"{case_name}.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"  {case_name}: L={L} frames={case['frames_per_image']} greedy={gen1[:8]}... margin={min(margins):.4f} generate-equal={same_as_generate}")


def record_layouts() -> None:
    """transformers' own resize/split arithmetic on many image sizes (no pixels: resize returns a
    zero-stride array of the target shape), for SmolVLM's real processor settings and ours."""
    rng = np.random.default_rng(7)
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 5000, size=(150, 2))]
    sizes += [(int(w), int(h)) for w, h in rng.integers(1, 300, size=(100, 2))]
    sizes += [(512, 512), (2048, 2048), (2049, 1), (1, 2049), (384, 1536), (1000, 3), (3, 1000), (4097, 100), (5000, 4999)]
    configs = [
        {"size": {"longest_edge": 2048}, "max_image_size": {"longest_edge": 512}, "do_image_splitting": True},  # SmolVLM-500M
        {"size": {"longest_edge": 1536}, "max_image_size": {"longest_edge": 384}, "do_image_splitting": True},
        {"size": {"longest_edge": 192}, "max_image_size": {"longest_edge": 48}, "do_image_splitting": True},
        {"size": {"longest_edge": 144}, "max_image_size": {"longest_edge": 36}, "do_image_splitting": False},
    ]
    out = []
    for cfg in configs:
        ip = Idefics3ImageProcessor(**cfg)
        shapes = []
        real_resize = Idefics3ImageProcessor.resize

        def fake_resize(self, image, size, resample=None, data_format=None, input_data_format=None, **kw):
            h, w = image.shape[:2]
            if "longest_edge" in size:
                from transformers.models.idefics3.image_processing_idefics3 import get_resize_output_image_size
                h, w = get_resize_output_image_size(image, resolution_max_side=size["longest_edge"], input_data_format="channels_last")
            else:
                h, w = size["height"], size["width"]
            shapes.append((w, h))
            return np.broadcast_to(np.uint8(0), (h, w, 3))

        Idefics3ImageProcessor.resize = fake_resize
        try:
            rows_out = []
            for w, h in sizes:
                shapes.clear()
                img = np.broadcast_to(np.uint8(0), (h, w, 3))
                resized = ip.resize(img, size=ip.size) if ip.do_resize else img
                r_h, r_w = resized.shape[:2]
                if ip.do_image_splitting:
                    split = ip.resize_for_vision_encoder(resized, ip.max_image_size["longest_edge"], input_data_format="channels_last")
                    frames, rows, cols = ip.split_image(split, max_image_size=ip.max_image_size, input_data_format="channels_last")
                    s_h, s_w = split.shape[:2]
                else:
                    m = ip.max_image_size["longest_edge"]
                    frames, rows, cols, s_w, s_h = [ip.resize(resized, size={"height": m, "width": m})], 0, 0, m, m
                assert all(f.shape[:2] == (ip.max_image_size["longest_edge"],) * 2 for f in frames)
                rows_out.append({"width": w, "height": h, "resized": [r_w, r_h], "split": [s_w, s_h], "rows": rows, "cols": cols, "frames": len(frames)})
        finally:
            Idefics3ImageProcessor.resize = real_resize
        out.append({"config": cfg, "cases": rows_out})
    (PARITY / "idefics3-layouts.json").write_text(json.dumps(out) + "\n")
    print(f"  idefics3-layouts.json: {len(configs)} configs x {len(sizes)} sizes")


PIL_RESIZE_SIZES = [(60, 45), (13, 9), (40, 6), (7, 50), (90, 20), (25, 80), (41, 30), (120, 100), (39, 31), (20, 44), (3, 3), (59, 1)]


def record_pil_resizes() -> None:
    """Pillow's own resize of one random 41 x 31 RGB image to sizes up and down, each axis and
    both, either pass order (Pillow >= 13 runs the vertical pass first when the height shrinks by
    more than twice as many pixels as the width), with LANCZOS and BICUBIC."""
    rng = np.random.default_rng(11)
    source = rng.integers(0, 256, size=(31, 41, 3), dtype=np.uint8)
    tensors = {"input": torch.from_numpy(source)}
    for resample, name in ((1, "lanczos"), (3, "bicubic")):
        for w, h in PIL_RESIZE_SIZES:
            out = np.array(Image.fromarray(source).resize((w, h), resample=resample))
            tensors[f"{name}.{w}x{h}"] = torch.from_numpy(np.ascontiguousarray(out))
    save_file(tensors, str(PARITY / "pil-resize.safetensors"), metadata={"pillow": version("pillow")})
    print(f"  pil-resize.safetensors: {len(tensors) - 1} resizes (pillow {version('pillow')})")


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    write_images()
    for name, split, seed in (("tiny-smolvlm", True, 2024), ("tiny-smolvlm-nosplit", False, 2025)):
        make_checkpoint(name, split=split, seed=seed)
        if (PARITY / name).exists():
            shutil.rmtree(PARITY / name)
        for case_name, spec in case_specs(split).items():
            record(name, case_name, spec)
    record_layouts()
    record_pil_resizes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
