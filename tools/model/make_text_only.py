#!/usr/bin/env python3
"""Tiny seeded text-only causal LMs (Llama, Mistral, Qwen2) and transformers' own outputs on them.

Purpose
-------
A user can chat about long files with a plain small LM: `LlamaForCausalLM`, `MistralForCausalLM`
and `Qwen2ForCausalLM` checkpoints load through the same runtime as LLaVA's (every token is text).
These checkpoints are made with transformers' own classes, each with a chat template copied
verbatim from a Hub checkpoint (test/runtime/hubTemplates.ts says where each came from):

* test/fixtures/models/tiny-llama-text/    LlamaForCausalLM, untied LM head, attention_bias,
  BOS-adding tokenizer, the Llama-3 template of llama3-llava-next-8b-hf.
* test/fixtures/models/tiny-mistral-text/  MistralForCausalLM, sliding_window 48 (shorter than
  the prompts), llava-v1.6-mistral's [INST] template.
* test/fixtures/models/tiny-qwen2-text/    Qwen2ForCausalLM, tied embeddings, use_sliding_window
  with sliding_window 48 and max_window_layers 1 (layer 0 full, layer 1 windowed), ChatML.

None has preprocessor_config.json or an image token in its config.

test/fixtures/parity/<name>/text.json + text.safetensors, two prompts per model:
* `chat`: a rendered multi-turn conversation (user, assistant, user): its ids, the logits of
  every position (`chat_logits`), and 32 greedy tokens (argmax, no EOS stop) on one KV cache.
* `long`: one user message holding a file of more than 512 tokens (the runtime's prefill chunk)
  and longer than the sliding window: its ids, the last position's logits (`long_logits`) and 32
  greedy tokens.

How to run (from the repository root)
-------------------------------------
    pip install -r tools/model/requirements.txt
    python3 tools/model/make_text_only.py

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
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.generation import GenerationConfig  # noqa: E402

from make_hub_shapes import MISTRAL_TEMPLATE, ONEVISION_TEMPLATE  # noqa: E402
from make_tiny import CORPUS, build_tokenizer, fresh_dir, init_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "test" / "fixtures" / "models"
PARITY = REPO / "test" / "fixtures" / "parity"
NEW_TOKENS = 32
WINDOW = 48
VOCAB = 416

# Verbatim (test/runtime/hubTemplates.ts LLAMA3_NEXT).
LLAMA3_TEMPLATE = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] + '<|eot_id|>' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

CHAT = [
    ("user", "Describe the picture. What shapes are in it, and which colors do they have?"),
    ("assistant", "The picture is a small drawing with simple shapes and flat colors: a red square and a blue circle."),
    ("user", "Which shape is in the middle of the picture, and what is the background like?"),
]
# A file longer than one prefill chunk (512 tokens) with this vocabulary.
FILE = CORPUS.strip()
LONG_QUESTION = "Here is a file:\n```\n" + FILE + "\n```\nWhich shapes does the file mention?"


def text_message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def tokenizer_with(specials: list[str], add_bos: bool, template: str):
    tokenizer = build_tokenizer(image_token_inside=True, add_bos=add_bos)
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(s, special=True, normalized=False) for s in specials]})
    tokenizer.chat_template = template
    return tokenizer


def llama() -> None:
    tokenizer = tokenizer_with(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], add_bos=True, template=LLAMA3_TEMPLATE)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rms_norm_eps=1e-5, attention_bias=True, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    save("tiny-llama-text", LlamaForCausalLM, config, tokenizer, seed=3141)


def mistral() -> None:
    tokenizer = tokenizer_with([], add_bos=True, template=MISTRAL_TEMPLATE)
    config = MistralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rms_norm_eps=1e-5, sliding_window=WINDOW, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    save("tiny-mistral-text", MistralForCausalLM, config, tokenizer, seed=2718)


def qwen2() -> None:
    tokenizer = tokenizer_with(["<|im_start|>", "<|im_end|>"], add_bos=False, template=ONEVISION_TEMPLATE)
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, rope_theta=1000000.0, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    assert config.layer_types == ["full_attention", "sliding_attention"], config.layer_types
    save("tiny-qwen2-text", Qwen2ForCausalLM, config, tokenizer, seed=1618)


def save(name: str, cls, config, tokenizer, seed: int) -> None:
    out_dir = MODELS / name
    print(f"[{name}] -> {out_dir.relative_to(REPO)}")
    torch.manual_seed(seed)
    model = cls(config)
    init_weights(model, seed=seed)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    fresh_dir(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    assert not (out_dir / "preprocessor_config.json").exists()
    record(name, cls)


def record(name: str, cls) -> None:
    model_dir = MODELS / name
    out_dir = PARITY / name
    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    assert type(model) is cls, type(model)
    tok = AutoTokenizer.from_pretrained(model_dir)

    def greedy(out) -> list[int]:
        ids: list[int] = []
        cache, logits = out.past_key_values, out.logits[0, -1]
        for _ in range(NEW_TOKENS):
            nxt = int(logits.argmax())
            ids.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[0, -1]
        return ids

    cases = {}
    tensors = {}
    for case, messages in (("chat", [text_message(r, t) for r, t in CHAT]), ("long", [text_message("user", LONG_QUESTION)])):
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), use_cache=True)
            logits = out.logits[0].clone()
            generated = greedy(out)
        tensors[f"{case}_logits"] = (logits if case == "chat" else logits[-1:]).contiguous()
        cases[case] = {"messages": messages, "prompt": prompt, "ids": ids, "generated": generated}
        print(f"  {case}: {len(ids)} tokens, then {tok.decode(generated)!r}")
    assert len(cases["long"]["ids"]) > 512 and len(cases["chat"]["ids"]) > WINDOW
    save_file(tensors, str(out_dir / "text.safetensors"), metadata={"format": "pt"})
    record_json = {"window": WINDOW, **cases, "versions": {k: version(k) for k in ("torch", "transformers", "tokenizers")}}
    (out_dir / "text.json").write_text(json.dumps(record_json, indent=2) + "\n")


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    llama()
    mistral()
    qwen2()
    return 0


if __name__ == "__main__":
    sys.exit(main())
