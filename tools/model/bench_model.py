#!/usr/bin/env python3
"""Benchmark peer for the runtime: a random LLaVA checkpoint with a Qwen2-0.5B-shaped text model,
and its prefill / decode speed in Hugging Face transformers on PyTorch CPU.

    python3 tools/model/bench_model.py make DIR        # writes the checkpoint (about 2 GB, F32)
    python3 tools/model/bench_model.py make DIR --layers 8   # the same shape with 8 decoder layers
    python3 tools/model/bench_model.py make-mha DIR    # LLaVA-1.5-like MHA Llama scaled to fit (about 0.9 GB)
    python3 tools/model/bench_model.py bench DIR --threads 2 --prompt 512 --new 32

`bench` prints one JSON line: load seconds, prefill tokens/s and decode tokens/s (greedy, with
the KV cache, full cache). `npm run bench:runtime` calls both and measures the TypeScript runtime
on the same checkpoint, threads and prompt in the same run. Needs tools/model/requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, Qwen2Config, SiglipVisionConfig

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_SOURCE = ROOT / "test/fixtures/models/tiny-llava-qwen2"
IMAGE_TOKEN_INDEX = 3


def qwen2_text(layers: int = 24) -> Qwen2Config:
    # The layer count goes into the constructor: setting num_hidden_layers afterwards leaves
    # layer_types (one entry per layer, derived in __init__) at 24 entries.
    return Qwen2Config(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=layers, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True, max_position_embeddings=32768,
    )


def mha_text() -> LlamaConfig:
    # LLaVA-1.5's Vicuna-7B (MHA: 32 heads x 128, 32 layers, 4096 wide, untied head) scaled to fit
    # 2 cores (16 heads x 64, 12 layers, 1024 wide): every head has its own K/V, so the KV cache is
    # large next to the weights, as in LLaVA.
    return LlamaConfig(
        hidden_size=1024, intermediate_size=2752, num_hidden_layers=12, num_attention_heads=16,
        num_key_value_heads=16, vocab_size=32000, rms_norm_eps=1e-5, tie_word_embeddings=False,
        max_position_embeddings=16384,
    )


def make(out: Path, text) -> None:
    torch.manual_seed(0)
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_INDEX,
                         vision_feature_layer=-1, vision_feature_select_strategy="full",
                         tie_word_embeddings=text.tie_word_embeddings)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="10GB")
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.json",
                 "preprocessor_config.json", "processor_config.json", "generation_config.json"]:
        if (TOKENIZER_SOURCE / name).exists():
            shutil.copy(TOKENIZER_SOURCE / name, out / name)
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))


def prompt_ids(length: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, min(vocab, 400), (1, length), generator=g)
    return ids


def bench(model_dir: Path, threads: int, prompt: int, new: int) -> None:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    load = time.perf_counter() - started
    lm = model.model.language_model
    head = model.lm_head
    ids = prompt_ids(prompt, model.config.text_config.vocab_size)
    with torch.no_grad():
        embeds = lm.embed_tokens(ids)
        lm(inputs_embeds=embeds[:, :8], use_cache=True)  # warm-up
        t = time.perf_counter()
        out = lm(inputs_embeds=embeds, use_cache=True)
        logits = head(out.last_hidden_state[:, -1:])
        prefill = time.perf_counter() - t
        past = out.past_key_values
        token = logits.argmax(-1)
        t = time.perf_counter()
        for step in range(new):
            position = torch.tensor([[prompt + step]])
            out = lm(inputs_embeds=lm.embed_tokens(token), past_key_values=past, position_ids=position, use_cache=True)
            past = out.past_key_values
            token = head(out.last_hidden_state).argmax(-1)
        decode = time.perf_counter() - t
    print(json.dumps({"load_s": load, "prefill_tokens_per_s": prompt / prefill, "decode_tokens_per_s": new / decode,
                      "threads": threads, "prompt": prompt, "new": new, "torch": torch.__version__}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir", type=Path)
    m.add_argument("--layers", type=int, default=24, help="decoder layers (24 as in Qwen2-0.5B)")
    mm = sub.add_parser("make-mha")
    mm.add_argument("dir", type=Path)
    b = sub.add_parser("bench")
    b.add_argument("dir", type=Path)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--prompt", type=int, default=512)
    b.add_argument("--new", type=int, default=32)
    args = parser.parse_args()
    if args.command == "make":
        make(args.dir, qwen2_text(args.layers))
    elif args.command == "make-mha":
        make(args.dir, mha_text())
    else:
        bench(args.dir, args.threads, args.prompt, args.new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
