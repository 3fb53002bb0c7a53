#!/usr/bin/env python3
"""Tiny seeded LLaVA checkpoints shaped like the Hub's, and transformers' greedy conversations on them.

Purpose
-------
The checkpoints of make_tiny.py hid four defects of real llava-hf checkpoints. These two carry
the shapes that reproduce them, each with a chat template copied verbatim from a llava-hf
checkpoint (see HUB_TEMPLATES), and transformers' own greedy two-turn conversation on each:

* test/fixtures/models/tiny-llava-mistral-hub/  Mistral text model with `sliding_window` 8
  (shorter than the prompt), CLIP tower whose image_size 36 is not a multiple of patch_size 8,
  `vision_feature_layer` a list ([-2, 0]: hidden states concatenated), strategy "default";
  llava-v1.6-mistral-7b-hf's chat template.
* test/fixtures/models/tiny-llava-qwen2-hub/  Qwen2 text model with `use_sliding_window`,
  `sliding_window` 8 and `max_window_layers` 1 (layer 0 full, layer 1 windowed), SigLIP tower
  with image_size 30 / patch_size 8 (a 3 x 3 grid, as so400m-patch14-384 floors 384 / 14),
  strategy "default" (transformers drops the first position for SigLIP too); the ChatML template
  of transformers' llava-onevision converter (the llava-hf onevision checkpoints').

test/fixtures/parity/<name>/conversation.json + conversation.safetensors: the two turns as
`Conversation` feeds them (turn 1 the whole prompt; turn 2 the text after the first answer as the
template renders it), the ids transformers generates greedily (argmax, no EOS stop) after each on
one uninterrupted KV cache, the processor's pixel values, the image features and the logits of
turn 1's prompt.

How to run (from the repository root, after make_tiny.py's images exist)
-------------------------------------------------------------------------
    pip install -r tools/model/requirements.txt
    python3 tools/model/make_hub_shapes.py

The outputs are committed; tests never run Python.
"""

from __future__ import annotations

import json
import os
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
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    MistralConfig,
    Qwen2Config,
    SiglipImageProcessor,
    SiglipVisionConfig,
)
from transformers.generation import GenerationConfig  # noqa: E402

import make_tiny  # noqa: E402
from make_tiny import CLIP_MEAN, CLIP_STD, build_tokenizer, fresh_dir, init_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
IMAGE_FILE = "test/fixtures/images/red-square.png"
NEW_TOKENS = 12
WINDOW = 8

# Verbatim chat templates (where each was copied from: test/runtime/hubTemplates.ts).
MISTRAL_TEMPLATE = "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '<\\\\s> '}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
ONEVISION_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

TURNS = ["What is in the image? Describe the colors and the shapes.", "And the background?"]


def mistral_hub() -> None:
    name = "tiny-llava-mistral-hub"
    tokenizer = build_tokenizer(image_token_inside=False, add_bos=True)
    tokenizer.chat_template = MISTRAL_TEMPLATE
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=36, patch_size=8, projection_dim=32)
    text = MistralConfig(
        vocab_size=416, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, rms_norm_eps=1e-5, sliding_window=WINDOW, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=[-2, 0], image_seq_length=16, tie_word_embeddings=False, pad_token_id=0,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 36}, resample=3, do_center_crop=True, crop_size={"height": 36, "width": 36}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    save(name, config, tokenizer, image_processor, MISTRAL_TEMPLATE, num_additional=1, seed=2468)


def qwen2_hub() -> None:
    name = "tiny-llava-qwen2-hub"
    tokenizer = build_tokenizer(image_token_inside=True, add_bos=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken("<|im_start|>", special=True, normalized=False), AddedToken("<|im_end|>", special=True, normalized=False)]})
    tokenizer.chat_template = ONEVISION_TEMPLATE
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=30, patch_size=8)
    text = Qwen2Config(
        vocab_size=416, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, rope_theta=1000000.0, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    assert text.layer_types == ["full_attention", "sliding_attention"], text.layer_types
    config = LlavaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1, image_seq_length=8, tie_word_embeddings=True, pad_token_id=0,
    )
    image_processor = SiglipImageProcessor(size={"height": 30, "width": 30}, resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    save(name, config, tokenizer, image_processor, ONEVISION_TEMPLATE, num_additional=0, seed=1357)


def save(name, config, tokenizer, image_processor, template, num_additional: int, seed: int) -> None:
    out_dir = MODELS / name
    print(f"[{name}] -> {out_dir.relative_to(REPO)}")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    init_weights(model, seed=seed)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    fresh_dir(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy, chat_template=template, image_token="<image>",
        num_additional_image_tokens=num_additional,
    )
    processor.save_pretrained(out_dir, save_jinja_files=False)
    record(name)


def streamed_answer(tokenizer, ids: list[int]) -> str:
    """The answer text as `Conversation` keeps it: a trailing partial UTF-8 character held back, one leading space dropped."""
    text = ""
    for n in range(1, len(ids) + 1):
        decoded = tokenizer.decode(ids[:n], skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):
            text = decoded
    return text[1:] if text.startswith(" ") else text


def record(name: str) -> None:
    model_dir = MODELS / name
    out_dir = PARITY / name
    out_dir.mkdir(parents=True, exist_ok=True)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    image = Image.open(REPO / IMAGE_FILE).convert("RGB")
    user1 = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": TURNS[0]}]}
    prompt1 = processor.apply_chat_template([user1], add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image], text=prompt1, return_tensors="pt")
    ids1 = inputs["input_ids"][0].tolist()

    def greedy(out, count: int) -> list[int]:
        ids: list[int] = []
        cache = out.past_key_values
        logits = out.logits[0, -1]
        for _ in range(count):
            nxt = int(logits.argmax())
            ids.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[0, -1]
        return ids, out

    with torch.no_grad():
        image_features = torch.stack(list(model.model.get_image_features(pixel_values=inputs["pixel_values"])))
        first = model(**inputs, use_cache=True)
        prompt_logits = first.logits[0].clone()
        gen1, last = greedy(first, NEW_TOKENS)
        # Turn 2 as Conversation feeds it: the rendering after the first answer's text.
        answer = streamed_answer(tok, gen1)
        assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        user2 = {"role": "user", "content": [{"type": "text", "text": TURNS[1]}]}
        marked = processor.apply_chat_template([user1, {"role": "assistant", "content": [{"type": "text", "text": "\x00MARK\x00"}]}], add_generation_prompt=False, tokenize=False)
        fed = marked[: marked.index("\x00MARK\x00")] + answer
        prompt2 = processor.apply_chat_template([user1, assistant, user2], add_generation_prompt=True, tokenize=False)
        assert prompt2.startswith(fed), (prompt2, fed)
        ids2 = tok(prompt2[len(fed) :], add_special_tokens=False)["input_ids"]
        second = model(input_ids=torch.tensor([ids2]), past_key_values=last.past_key_values, use_cache=True)
        gen2, _ = greedy(second, NEW_TOKENS)

    tensors = {"pixel_values": inputs["pixel_values"].contiguous(), "image_features": image_features.contiguous(), "prompt_logits": prompt_logits.contiguous()}
    save_file(tensors, str(out_dir / "conversation.safetensors"), metadata={"format": "pt"})
    case = {
        "image": IMAGE_FILE,
        "turns": TURNS,
        "window": WINDOW,
        "prompt1": prompt1,
        "ids1": ids1,
        "generated1": gen1,
        "answer1": answer,
        "prompt2": prompt2,
        "ids2": ids2,
        "generated2": gen2,
        "versions": {k: version(k) for k in ("torch", "transformers", "tokenizers")},
    }
    (out_dir / "conversation.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"  {len(ids1)} + {NEW_TOKENS} + {len(ids2)} + {NEW_TOKENS} tokens; answer 1 {answer!r}")


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    assert make_tiny.IMAGES.joinpath("red-square.png").exists()
    mistral_hub()
    qwen2_hub()
    return 0


if __name__ == "__main__":
    sys.exit(main())
