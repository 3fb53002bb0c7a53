#!/usr/bin/env python3
"""Record reference outputs of transformers for the tiny LLaVA checkpoints (parity fixtures).

Purpose
-------
For each checkpoint written by tools/model/make_tiny.py (test/fixtures/models/<name>/), load
it exactly as a user would (`LlavaForConditionalGeneration.from_pretrained(dir,
dtype=float32, attn_implementation="eager")` + `AutoProcessor.from_pretrained(dir)`), run one
chat turn with the two fixture images, and write test/fixtures/parity/<name>/:

* case.json             messages, rendered prompt, expanded input_ids, image files, image
                        token id, tokens per image, 32 greedy token ids, the position-test
                        positions, shapes of every tensor, library versions.
* tensors.safetensors   (all F32)
    pixel_values              [n_images, 3, 32, 32]  processor output
    images.<i>.resized        [h, w, 3]  PIL-resized image (uint8 values) before crop/rescale/normalise
    vision_features           [n_images, 16, 32]  selected vision hidden states (before the projector)
    image_features            [n_images, 16, 64]  projector output inserted at the <image> tokens
    inputs_embeds             [1, L, 64]  text embeddings with the image features merged in
    logits                    [1, L, V]  full prefill
    layers.<i>.key / .value   [1, Hkv, L, head_dim]  KV cache after prefill (keys post-RoPE)
    layers.<i>.colsum         [H, L]  attention probabilities summed over the query rows
    generate.logits           [32, V]  raw logits of each greedy step (before logits processors)
    position_test.logits      [1, 12, V]  language model on inputs_embeds[:, :12] with explicit
                              non-contiguous position_ids and the normal causal mask
    position_test.layers.<i>.key / .value  [1, Hkv, 12, head_dim]

How to run (from the repository root)
-------------------------------------
    pip install -r tools/model/requirements.txt
    python3 tools/model/make_tiny.py
    python3 tools/model/record_fixtures.py

The outputs are committed, so `npm test` never runs Python; rerun only when the fixtures
must change. Everything runs on CPU with one thread and is deterministic.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoProcessor, LlavaForConditionalGeneration  # noqa: E402
from transformers.image_transforms import resize  # noqa: E402
from transformers.image_utils import to_numpy_array  # noqa: E402

from recording import cache_kv, forward_capturing  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
IMAGE_FILES = ["test/fixtures/images/red-square.png", "test/fixtures/images/blue-circle.png"]
QUESTION = "What is in the second image?"
NEW_TOKENS = 32
POSITION_TEST_IDS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 30, 31]


def resized_images(image_processor, images):
    """Reproduce only the resize step of the slow image processor (for debugging the TS port)."""
    out = []
    for img in images:
        arr = to_numpy_array(img.convert("RGB"))
        size = image_processor.size
        if "shortest_edge" in size:
            arr = image_processor.resize(arr, size=size, resample=image_processor.resample)
        else:
            arr = resize(arr, size=(size["height"], size["width"]), resample=image_processor.resample)
        out.append(torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32))
    return out


def record(name: str) -> None:
    model_dir = MODELS / name
    out_dir = PARITY / name
    print(f"[{name}] {model_dir.relative_to(REPO)} -> {out_dir.relative_to(REPO)}")
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    cfg = model.config
    tcfg = cfg.text_config
    lm = model.model.language_model
    n_layers = tcfg.num_hidden_layers
    n_heads = tcfg.num_attention_heads
    n_kv = tcfg.num_key_value_heads
    head_dim = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // n_heads

    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": QUESTION}],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == processor.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.open(REPO / f).convert("RGB") for f in IMAGE_FILES]
    inputs = processor(images=images, text=prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    L = input_ids.shape[1]
    image_token_index = cfg.image_token_index
    n_image_tokens = int((input_ids == image_token_index).sum())
    tokens_per_image = n_image_tokens // len(images)
    assert tokens_per_image * len(images) == n_image_tokens == 32, n_image_tokens
    pixel_values = inputs["pixel_values"]

    with torch.no_grad():
        # --- vision tower + projector, as LlavaModel.get_image_features does it
        vt_out = model.model.vision_tower(pixel_values, output_hidden_states=True)
        selected = vt_out.hidden_states[cfg.vision_feature_layer]
        if cfg.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        image_features = torch.stack(list(model.model.get_image_features(pixel_values=pixel_values)))
        assert torch.equal(image_features, model.model.multi_modal_projector(selected))

        # --- full prefill; capture what the language model receives
        out, captured = forward_capturing(model, lm, inputs)
        logits = out.logits
        inputs_embeds = captured["inputs_embeds"]

        # independent merge: embeddings with image features scattered over the <image> rows
        manual = model.get_input_embeddings()(input_ids).clone()
        manual[input_ids == image_token_index] = image_features.reshape(-1, image_features.shape[-1])
        assert torch.equal(manual, inputs_embeds)

        # verify: inputs_embeds + default positions through the language model reproduce logits
        ones = torch.ones(1, L, dtype=torch.long)
        re = model.lm_head(lm(inputs_embeds=inputs_embeds, attention_mask=ones).last_hidden_state)
        diff = (re - logits).abs().max().item()
        assert diff < 1e-6, diff
        print(f"  re-run from inputs_embeds: max |diff| = {diff:.3g}")

        tensors = {
            "pixel_values": pixel_values,
            "vision_features": selected,
            "image_features": image_features,
            "inputs_embeds": inputs_embeds,
            "logits": logits,
        }
        for i, r in enumerate(resized_images(processor.image_processor, images)):
            tensors[f"images.{i}.resized"] = r
        for i in range(n_layers):
            k, v = cache_kv(out.past_key_values, i)
            assert tuple(k.shape) == (1, n_kv, L, head_dim), k.shape
            tensors[f"layers.{i}.key"] = k
            tensors[f"layers.{i}.value"] = v
            att = out.attentions[i]
            assert tuple(att.shape) == (1, n_heads, L, L)
            tensors[f"layers.{i}.colsum"] = att[0].sum(dim=1)

        # --- position test: non-contiguous positions, normal causal mask
        S = len(POSITION_TEST_IDS)
        pos = torch.tensor([POSITION_TEST_IDS], dtype=torch.long)
        # An explicit 2-D attention mask is REQUIRED: with attention_mask=None and no cache,
        # transformers 4.57 treats position jumps as packed-sequence boundaries
        # (masking_utils.find_packed_sequence_indices) and builds a block-diagonal mask.
        pt = lm(inputs_embeds=inputs_embeds[:, :S], position_ids=pos, attention_mask=torch.ones(1, S, dtype=torch.long),
                use_cache=True)
        pt_logits = model.lm_head(pt.last_hidden_state)
        # cross-check with an explicit additive 4-D causal mask
        neg = torch.finfo(torch.float32).min
        mask4 = torch.full((S, S), neg).triu(1)[None, None]
        pt4 = model.lm_head(lm(inputs_embeds=inputs_embeds[:, :S], position_ids=pos, attention_mask=mask4).last_hidden_state)
        assert (pt4 - pt_logits).abs().max().item() < 1e-6
        packed = model.lm_head(lm(inputs_embeds=inputs_embeds[:, :S], position_ids=pos, use_cache=False).last_hidden_state)
        assert (packed - pt_logits).abs().max().item() > 1e-3, "expected the packed-sequence mask to differ"
        assert (pt_logits - logits[:, :S]).abs().max().item() > 1e-4, "positions had no effect"
        tensors["position_test.logits"] = pt_logits
        for i in range(n_layers):
            k, v = cache_kv(pt.past_key_values, i)
            tensors[f"position_test.layers.{i}.key"] = k
            tensors[f"position_test.layers.{i}.value"] = v

        # --- greedy generation
        gen = model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            output_scores=True,
            output_logits=True,
            return_dict_in_generate=True,
        )
    greedy = gen.sequences[0, L:].tolist()
    assert len(greedy) == NEW_TOKENS
    raw = torch.cat(gen.logits, dim=0)  # [32, V] before logits processors
    scores = torch.cat(gen.scores, dim=0)  # after processors (min_new_tokens masks eos)
    assert scores.argmax(-1).tolist() == greedy
    d0 = (raw[0] - logits[0, -1]).abs().max().item()
    print(f"  generate step-0 logits vs prefill last row: max |diff| = {d0:.3g}")
    assert d0 < 1e-5, d0
    top2 = scores.topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    eos = tcfg.eos_token_id if tcfg.eos_token_id is not None else model.generation_config.eos_token_id
    eos_steps = [i for i, t in enumerate(raw.argmax(-1).tolist()) if t == eos]
    tensors["generate.logits"] = raw

    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "tensors.safetensors"), metadata={"format": "pt"})

    tok = processor.tokenizer
    case = {
        "model": name,
        "model_dir": f"test/fixtures/models/{name}",
        "messages": messages,
        "prompt": prompt,
        "input_ids": input_ids[0].tolist(),
        "prompt_length": L,
        "image_files": IMAGE_FILES,
        "image_token_index": image_token_index,
        "tokens_per_image": tokens_per_image,
        "vocab_size": tcfg.vocab_size,
        "tokenizer_vocab_size": len(tok),
        "num_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "eos_token_id": eos,
        "greedy_tokens": greedy,
        "greedy_text": tok.decode(greedy, skip_special_tokens=False),
        "greedy_min_margin": min(margins),
        "greedy_eos_suppressed_steps": eos_steps,
        "generation": {"do_sample": False, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS},
        "position_test": {
            "positions": POSITION_TEST_IDS,
            "length": S,
            "mask": "causal over the 12 rows; positions only change RoPE",
        },
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
        "versions": {
            "transformers": version("transformers"),
            "torch": torch.__version__.split("+")[0],
            "tokenizers": version("tokenizers"),
            "safetensors": version("safetensors"),
            "pillow": version("pillow"),
            "numpy": version("numpy"),
        },
    }
    (out_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"  L={L} V={tcfg.vocab_size} greedy={greedy}")
    print(f"  min greedy margin {min(margins):.4f}; raw argmax was eos at steps {eos_steps}")
    for f in sorted(out_dir.iterdir()):
        print(f"  {f.relative_to(REPO)}  {f.stat().st_size} bytes")


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in ("tiny-llava-llama", "tiny-llava-qwen2"):
        record(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
