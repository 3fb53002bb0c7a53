#!/usr/bin/env python3
"""Record transformers' reference outputs for the tiny Qwen2-VL / Qwen2.5-VL checkpoints.

Purpose
-------
For each checkpoint written by tools/model/make_qwen2vl.py, load it as a user would
(`from_pretrained(dir, dtype=float32, attn_implementation="eager")`, the checkpoint's slow
`Qwen2VLImageProcessor` and chat template; make_qwen2vl.load_processor) and write
test/fixtures/parity/<name>/case.json and tensors.safetensors (all F32) with:

* images: every fixture image (several sizes and aspect ratios: below min_pixels, above
  max_pixels, already a multiple of 28, wide, tall), each processed alone:
    images.<i>.resized       [h, w, 3]  the PIL-resized image (uint8 values) before rescale/normalise
    images.<i>.pixel_values  [t*h*w, C*T*P*P]  the processor's flattened patches
    images.<i>.features      [t*h*w/merge^2, text hidden]  the vision tower's merged output
  and in case.json each image's file, original and resized size and image_grid_thw.
* cases: conversations rendered with the chat template, each with its prompt, input_ids,
  image_grid_thw, M-RoPE position ids (`get_rope_index`, [3, L]) and rope delta, 32 greedy tokens
  (`generate`, min_new_tokens=32) and these tensors under `<case>.`:
    inputs_embeds [1, L, D], position_ids [3, L], logits [1, L, V] (only the last 16 rows for
    `long`: `logits_tail`), layers.<i>.key / .value [1, Hkv, L, head_dim] (keys post-RoPE),
    layers.<i>.colsum [H, L] (attention probabilities summed over the query rows),
    generate.logits [32, V] (raw, before logits processors).
  - `two_images`: one user turn, two images of different sizes interleaved with text; also the
    vision tower's intermediate states (vision.patch_embeds, vision.blocks.<i>, before the merger)
    and a position test: the language model on inputs_embeds[:, :12] with explicit
    non-contiguous 3-D position ids (each component different) and a causal mask.
  - `long`: a system prompt, an image and a question longer than one prefill chunk (512 tokens).
  - `chat`: a two-turn conversation: turn 1 (an image and a question) answered greedily until
    eos or 24 tokens; the decoded answer goes back in as the assistant message; turn 2 (another
    image) is rendered as the whole conversation. Records both prompts, ids and answers.

How to run (from the repository root)
-------------------------------------
    /tmp/h8venv/bin/python tools/model/make_qwen2vl.py
    /tmp/h8venv/bin/python tools/model/record_qwen2vl.py

The outputs are committed, so `npm test` never runs Python. CPU, one thread, deterministic.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from make_qwen2vl import load_processor  # noqa: E402
from recording import cache_kv, forward_capturing  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration  # noqa: E402
from transformers.image_transforms import resize  # noqa: E402
from transformers.image_utils import to_numpy_array  # noqa: E402
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
IMAGE_FILES = [
    "test/fixtures/images/red-square.png",
    "test/fixtures/images/blue-circle.png",
    "test/fixtures/images/qwen2vl/wide-editor.png",
    "test/fixtures/images/qwen2vl/tall-list.png",
    "test/fixtures/images/qwen2vl/exact-112x56.png",
    "test/fixtures/images/qwen2vl/tiny-icon.png",
]
NEW_TOKENS = 32
CHAT_FIRST_TOKENS = 24
POSITION_TEST = [[0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 30, 31], [0, 1, 2, 3, 7, 7, 8, 8, 16, 20, 30, 33], [0, 1, 2, 3, 9, 8, 7, 10, 16, 17, 35, 31]]
LONG_TEXT = (
    "Here is the log of a build that failed. Read it and tell me which step broke and why. "
    "The compiler printed a warning about an unused variable in the main module, then the linker "
    "could not find the symbol that the test runner needs, and the job stopped after two minutes. "
) * 4


def user(*parts):
    return {"role": "user", "content": [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts]}


def load_image(path: str) -> Image.Image:
    return Image.open(REPO / path).convert("RGB")


def resized(processor, image: Image.Image) -> np.ndarray:
    """The resize step alone, as Qwen2VLImageProcessor._preprocess does it (PIL bicubic)."""
    ip = processor.image_processor
    arr = to_numpy_array(image)
    h, w = arr.shape[:2]
    rh, rw = smart_resize(h, w, factor=ip.patch_size * ip.merge_size, min_pixels=ip.min_pixels, max_pixels=ip.max_pixels)
    return resize(arr, size=(rh, rw), resample=ip.resample)


def rope_index(model, input_ids, grid):
    kwargs = {"attention_mask": torch.ones_like(input_ids)}
    return model.model.get_rope_index(input_ids, grid, None, **kwargs)


def record_images(model, processor, tensors: dict) -> list:
    out = []
    ip = processor.image_processor
    for i, f in enumerate(IMAGE_FILES):
        image = load_image(f)
        r = resized(processor, image)
        px = ip(images=[image], return_tensors="pt")
        grid = px["image_grid_thw"]
        t, h, w = grid[0].tolist()
        assert (h * ip.patch_size, w * ip.patch_size) == r.shape[:2]
        with torch.no_grad():
            feats = model.model.get_image_features(px["pixel_values"], grid)[0]
        assert feats.shape[0] == t * h * w // ip.merge_size**2
        tensors[f"images.{i}.resized"] = torch.from_numpy(np.ascontiguousarray(r)).float()
        tensors[f"images.{i}.pixel_values"] = px["pixel_values"]
        tensors[f"images.{i}.features"] = feats
        out.append({"file": f, "width": image.width, "height": image.height, "resized_width": r.shape[1], "resized_height": r.shape[0], "image_grid_thw": [t, h, w], "tokens": feats.shape[0]})
        print(f"  image {f}: {image.width}x{image.height} -> {r.shape[1]}x{r.shape[0]}, grid {[t, h, w]}")
    return out


def run_case(name, model, processor, messages, image_files, tensors, *, full_logits=True, vision_detail=False, position_test=False):
    cfg = model.config
    tcfg = cfg.text_config
    lm = model.model.language_model
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [load_image(f) for f in image_files]
    inputs = processor(images=images or None, text=prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    L = input_ids.shape[1]
    grid = inputs.get("image_grid_thw")
    n_layers, n_heads, n_kv = tcfg.num_hidden_layers, tcfg.num_attention_heads, tcfg.num_key_value_heads
    head_dim = tcfg.hidden_size // n_heads
    p = f"{name}."
    with torch.no_grad():
        positions, delta = rope_index(model, input_ids, grid)
        out, captured = forward_capturing(model, lm, inputs, ("inputs_embeds", "position_ids"))
        assert torch.equal(captured["position_ids"], positions), "the model used other positions than get_rope_index"
        embeds = captured["inputs_embeds"]
        # independent merge: token embeddings with the image features over the image-pad rows
        if grid is not None:
            feats = torch.cat(list(model.model.get_image_features(inputs["pixel_values"], grid)))
            manual = model.get_input_embeddings()(input_ids).clone()
            manual[input_ids == cfg.image_token_id] = feats
            assert torch.equal(manual, embeds)
        logits = out.logits
        tensors[p + "inputs_embeds"] = embeds
        tensors[p + "position_ids"] = positions[:, 0]
        if full_logits:
            tensors[p + "logits"] = logits
        else:
            tensors[p + "logits_tail"] = logits[:, -16:]
        for i in range(n_layers):
            k, v = cache_kv(out.past_key_values, i)
            assert tuple(k.shape) == (1, n_kv, L, head_dim), k.shape
            tensors[f"{p}layers.{i}.key"] = k
            tensors[f"{p}layers.{i}.value"] = v
            att = out.attentions[i]
            assert tuple(att.shape) == (1, n_heads, L, L)
            tensors[f"{p}layers.{i}.colsum"] = att[0].sum(dim=1)

        if vision_detail:
            visual = model.model.visual
            states = {}
            hooks = [visual.patch_embed.register_forward_hook(lambda _m, _a, o: states.__setitem__("patch_embeds", o.detach().clone()))]
            for bi, block in enumerate(visual.blocks):
                hooks.append(block.register_forward_hook(lambda _m, _a, o, bi=bi: states.__setitem__(f"blocks.{bi}", o.detach().clone())))
            hooks.append(visual.merger.register_forward_pre_hook(lambda _m, a: states.__setitem__("merger_in", a[0].detach().clone())))
            model.model.get_image_features(inputs["pixel_values"], grid)
            for hk in hooks:
                hk.remove()
            for k, v in states.items():
                tensors[f"{p}vision.{k}"] = v

        pt = None
        if position_test:
            S = len(POSITION_TEST[0])
            pos = torch.tensor(POSITION_TEST, dtype=torch.long)[:, None, :]  # [3, 1, S]
            # An explicit 2-D mask: without one transformers reads position jumps as packed sequences.
            r = lm(inputs_embeds=embeds[:, :S], position_ids=pos, attention_mask=torch.ones(1, S, dtype=torch.long), use_cache=True)
            pt_logits = model.lm_head(r.last_hidden_state)
            assert (pt_logits - logits[:, :S]).abs().max().item() > 1e-4, "positions had no effect"
            tensors[p + "position_test.logits"] = pt_logits
            for i in range(n_layers):
                k, v = cache_kv(r.past_key_values, i)
                tensors[f"{p}position_test.layers.{i}.key"] = k
                tensors[f"{p}position_test.layers.{i}.value"] = v
            pt = {"positions": POSITION_TEST, "length": S}

        gen = model.generate(**inputs, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, output_scores=True, output_logits=True, return_dict_in_generate=True)
    greedy = gen.sequences[0, L:].tolist()
    assert len(greedy) == NEW_TOKENS
    raw = torch.cat(gen.logits, dim=0)
    scores = torch.cat(gen.scores, dim=0)
    assert scores.argmax(-1).tolist() == greedy
    d0 = (raw[0] - logits[0, -1]).abs().max().item()
    assert d0 < 1e-5, d0
    top2 = scores.topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    tensors[p + "generate.logits"] = raw
    tok = processor.tokenizer
    case = {
        "messages": messages,
        "prompt": prompt,
        "image_files": image_files,
        "input_ids": input_ids[0].tolist(),
        "prompt_length": L,
        "image_grid_thw": [] if grid is None else grid.tolist(),
        "image_tokens": int((input_ids == cfg.image_token_id).sum()),
        "rope_delta": int(delta[0, 0]),
        "greedy_tokens": greedy,
        "greedy_text": tok.decode(greedy, skip_special_tokens=False),
        "greedy_min_margin": min(margins),
        "generation": {"do_sample": False, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS},
    }
    if pt:
        case["position_test"] = pt
    print(f"  [{name}] L={L} grids={case['image_grid_thw']} delta={case['rope_delta']} greedy={greedy[:8]}... margin {min(margins):.4f}")
    return case


def chat_case(model, processor, tensors):
    """A two-turn conversation: turn 1 answered greedily (eos or 24 tokens), turn 2 recorded in full."""
    first = [user(None, "What is in this image?")]
    files1 = [IMAGE_FILES[4]]
    prompt1 = processor.apply_chat_template(first, add_generation_prompt=True, tokenize=False)
    inputs1 = processor(images=[load_image(f) for f in files1], text=prompt1, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**inputs1, do_sample=False, max_new_tokens=CHAT_FIRST_TOKENS)
    L1 = inputs1["input_ids"].shape[1]
    answer_ids = gen[0, L1:].tolist()
    tok = processor.tokenizer
    answer = tok.decode(answer_ids, skip_special_tokens=True)
    messages = first + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}, user(None, "And this one?")]
    case = run_case("chat", model, processor, messages, files1 + [IMAGE_FILES[5]], tensors)
    ids2 = case["input_ids"]
    case["turn1"] = {
        "messages": first,
        "prompt": prompt1,
        "input_ids": inputs1["input_ids"][0].tolist(),
        "answer_ids": answer_ids,
        "answer_text": answer,
        # whether turn 2's ids continue turn 1's prompt and answer token for token
        "continues_ids": ids2[: L1 + len(answer_ids)] == inputs1["input_ids"][0].tolist() + answer_ids,
    }
    print(f"  [chat] turn 1 answer {len(answer_ids)} tokens {answer!r}; continues ids: {case['turn1']['continues_ids']}")
    return case


def record(name: str) -> None:
    model_dir = MODELS / name
    out_dir = PARITY / name
    print(f"[{name}] {model_dir.relative_to(REPO)} -> {out_dir.relative_to(REPO)}")
    config = json.loads((model_dir / "config.json").read_text())
    cls = {"Qwen2VLForConditionalGeneration": Qwen2VLForConditionalGeneration, "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLForConditionalGeneration}[config["architectures"][0]]
    model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    processor = load_processor(model_dir)
    tcfg = model.config.text_config
    tensors: dict = {}
    images = record_images(model, processor, tensors)
    cases = {
        "two_images": run_case(
            "two_images", model, processor, [user(None, "Compare the first image", None, "with the second one. What changed?")], [IMAGE_FILES[0], IMAGE_FILES[2]], tensors,
            vision_detail=True, position_test=True,
        ),
        "long": run_case(
            "long", model, processor, [{"role": "system", "content": [{"type": "text", "text": "You read screenshots and logs."}]}, user(None, LONG_TEXT)], [IMAGE_FILES[3]], tensors,
            full_logits=False,
        ),
        "chat": chat_case(model, processor, tensors),
    }
    assert cases["long"]["prompt_length"] > 512, cases["long"]["prompt_length"]
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "tensors.safetensors"), metadata={"format": "pt"})
    ip = processor.image_processor
    case = {
        "model": name,
        "model_dir": f"test/fixtures/models/{name}",
        "architecture": config["architectures"][0],
        "image_token_id": model.config.image_token_id,
        "vision_start_token_id": model.config.vision_start_token_id,
        "vision_end_token_id": model.config.vision_end_token_id,
        "eos_token_id": tcfg.eos_token_id,
        "vocab_size": tcfg.vocab_size,
        "num_layers": tcfg.num_hidden_layers,
        "num_attention_heads": tcfg.num_attention_heads,
        "num_key_value_heads": tcfg.num_key_value_heads,
        "head_dim": tcfg.hidden_size // tcfg.num_attention_heads,
        "mrope_section": tcfg.rope_scaling["mrope_section"],
        "image_processor": {"min_pixels": ip.min_pixels, "max_pixels": ip.max_pixels, "patch_size": ip.patch_size, "temporal_patch_size": ip.temporal_patch_size, "merge_size": ip.merge_size},
        "images": images,
        "cases": cases,
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
        "versions": {m: version(m) for m in ("transformers", "tokenizers", "safetensors", "pillow", "numpy")} | {"torch": torch.__version__.split("+")[0]},
    }
    (out_dir / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    for f in sorted(out_dir.iterdir()):
        print(f"  {f.relative_to(REPO)}  {f.stat().st_size} bytes")


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in ("tiny-qwen2-vl", "tiny-qwen2.5-vl"):
        record(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
