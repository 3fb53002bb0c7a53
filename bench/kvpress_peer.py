#!/usr/bin/env python3
"""NVIDIA kvpress as a peer on the later-turn items (issue 19, section 3), through transformers.

What it runs
------------
The items come from the project's own generator, exported as chat messages:

    npx tsx tools/eval.ts --model .models/smollm2-135m-instruct --later-turns --items 8 \\
        --export-items /tmp/later-items.json

Each item is a conversation: turn 1 attaches a long file (`name = value` lines, or small Python
functions returning constants) and asks only for an acknowledgement; one or two unrelated turns may
follow; the last turn asks for one value of the file. The model is the converted SmolLM2-135M-
Instruct (`npm run model:smollm2`), float32, on CPU.

Protocol (kvpress compresses a context once, at its prefill)
------------------------------------------------------------
kvpress's presses are forward hooks that compress the KV cache only while the cache is being
prefilled from empty (`is_prefilling`: the last cache position + 1 equals the query length); every
later forward (decoding, or appending a question to the cache) is left alone. Its own pipeline
uses this to compress a context once and answer questions asked after it, which is the later-turn
situation exactly. So, per item and press:

1. turn 1's whole rendered prompt (system prompt, the file, the acknowledgement request, up to
   `<|im_start|>assistant\\n`) is prefilled with the press active: the press keeps
   `1 - compression_ratio` of those tokens in every layer and head, with nothing of the later
   question to guide it (SnapKV's observation window is the end of turn 1's prompt);
2. the answer to each turn is decoded greedily (at most `--max-new-tokens`, stopping at
   `<|im_end|>`) on that cache, and each later turn's tokens are appended uncompressed with their
   true positions (as kvpress's pipeline passes `position_ids` after a compressed context);
3. the item is right when the last answer contains the expected value.

The project's runtime compresses at every turn (the budget is a share of all tokens seen), and the
later turns here are short next to the file, so both keep about the same share at the question.
Accuracy is reported relative to the full cache run through the same protocol, per kind, with
the share of the turn-1 prompt kept. The full cache's answers are free-running (not teacher-forced
like tools/eval/run.ts), so a press can be right where the full cache is wrong; the relative
figure counts items right under the press among those right with the full cache.

How to run
----------
kvpress 0.5.5 installs next to transformers 4.57.6 (this machine: a venv under /tmp that reads
/tmp/h8venv's packages through a .pth file, so that venv stays as it was):

    pip install kvpress==0.5.5 transformers==4.57.6 huggingface-hub==0.36.2
    python3 bench/kvpress_peer.py --items /tmp/later-items.json [--budgets 0.2,0.1,0.05] \\
        [--presses snapkv,expected_attention,knorm,streaming_llm] [--out bench/results/kvpress-peer.md]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EOS = 2  # <|im_end|>


def make_press(name: str, ratio: float):
    from kvpress import ExpectedAttentionPress, KnormPress, SnapKVPress, StreamingLLMPress

    presses = {
        "snapkv": lambda: SnapKVPress(compression_ratio=ratio),
        "expected_attention": lambda: ExpectedAttentionPress(compression_ratio=ratio),
        "knorm": lambda: KnormPress(compression_ratio=ratio),
        "streaming_llm": lambda: StreamingLLMPress(compression_ratio=ratio),
    }
    if name not in presses:
        raise SystemExit(f"--presses: {name!r} is not one of {', '.join(presses)}")
    return presses[name]()


@torch.no_grad()
def converse(model, tokenizer, item: dict, press, max_new_tokens: int) -> tuple[list[str], int, int]:
    """The item's turns on one cache, turn 1 prefilled under `press`. Returns the answers, the
    turn-1 prompt length and the cache length right after turn 1's prefill."""
    cache = DynamicCache()
    messages: list[dict[str, str]] = []
    answers: list[str] = []
    fed = 0  # true positions used so far
    prompt_len = kept = 0
    answers_ended = True
    for t, turn in enumerate(item["turns"]):
        messages.append({"role": "user", "content": turn["content"]})
        if t == 0:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        else:
            # ChatML continuation after the last answer (which stopped at <|im_end|> or at the limit).
            tail = "" if answers_ended else "<|im_end|>"
            ids = tokenizer(f"{tail}\n<|im_start|>user\n{turn['content']}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False).input_ids
        positions = torch.arange(fed, fed + len(ids)).unsqueeze(0)
        with press(model) if (press is not None and t == 0) else nullcontext():
            out = model(input_ids=torch.tensor([ids]), past_key_values=cache, position_ids=positions, use_cache=True, logits_to_keep=1)
        fed += len(ids)
        if t == 0:
            prompt_len, kept = len(ids), cache.get_seq_length()
        generated: list[int] = []
        logits = out.logits[0, -1]
        answers_ended = False
        for _ in range(max_new_tokens):
            token = int(torch.argmax(logits))
            generated.append(token)
            if token == EOS:
                answers_ended = True
            step = model(input_ids=torch.tensor([[token]]), past_key_values=cache, position_ids=torch.tensor([[fed]]), use_cache=True)
            fed += 1
            if answers_ended:
                break
            logits = step.logits[0, -1]
        answer = tokenizer.decode(generated, skip_special_tokens=True)
        answers.append(answer)
        messages.append({"role": "assistant", "content": answer})
    return answers, prompt_len, kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", required=True, help="JSON from tools/eval.ts --later-turns --export-items")
    parser.add_argument("--model", default=str(REPO / ".models" / "smollm2-135m-instruct"))
    parser.add_argument("--presses", default="snapkv,expected_attention,knorm,streaming_llm")
    parser.add_argument("--budgets", default="0.2,0.1,0.05", help="shares of turn 1's prompt kept")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="first N items only")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "kvpress-peer.md"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exported = json.loads(Path(args.items).read_text())
    items = exported["items"][: args.limit or None]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa").eval()

    def score(press_name: str | None, budget: float) -> dict:
        right: dict[str, list[bool]] = {}
        shares: list[float] = []
        answers: list[str] = []
        for item in items:
            press = None if press_name is None else make_press(press_name, 1 - budget)
            said, prompt_len, kept = converse(model, tokenizer, item, press, args.max_new_tokens)
            last = item["turns"][-1]
            right.setdefault(item["kind"], []).append(last["expected"].lower() in said[-1].lower())
            shares.append(kept / prompt_len)
            answers.append(said[-1])
            print(f"{press_name or 'full'} {budget:.2f} {item['id']}: {said[-1]!r} (expected {last['expected']}; kept {kept}/{prompt_len})", flush=True)
        return {"press": press_name or "full", "budget": budget, "right": right, "share": sum(shares) / len(shares), "answers": answers}

    started = time.time()
    full = score(None, 1.0)
    rows = [full]
    for name in [p for p in args.presses.split(",") if p]:
        for budget in [float(b) for b in args.budgets.split(",")]:
            rows.append(score(name, budget))
    seconds = time.time() - started

    kinds = list(full["right"])
    lengths = sorted({i["fileTokens"] for i in items if i.get("fileTokens")})

    def relative(row: dict, kind: str) -> str:
        base = [i for i, ok in enumerate(full["right"][kind]) if ok]
        if not base:
            return "–"
        return f"{sum(row['right'][kind][i] for i in base) / len(base):.2f}"

    def acc(row: dict, kind: str) -> str:
        xs = row["right"][kind]
        return f"{sum(xs)}/{len(xs)}"

    lines = [
        f"# kvpress {version('kvpress')} on the later-turn items (SmolLM2-135M-Instruct, transformers {version('transformers')}, torch {version('torch')}, CPU float32)",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} · {len(items)} items from `{Path(args.items).name}` (seed {exported.get('seed')}; file lengths {lengths} tokens) · {args.max_new_tokens} new tokens per answer · {seconds:.0f} s on {args.threads} shared cores",
        "",
        "Protocol: turn 1 (the file and a request to acknowledge it) is prefilled under the press, which keeps the budget's share of it in every layer and head; the later turns (unrelated questions, then the question about one line) are appended to that cache uncompressed, at their true positions, and answered greedily. See the docstring of bench/kvpress_peer.py.",
        "",
        "Full cache, right answers by kind: " + " · ".join(f"{k} {acc(full, k)}" for k in kinds),
        "",
        f"| press | budget | share of turn 1 kept | {' | '.join(f'{k} right' for k in kinds)} | {' | '.join(f'{k} relative' for k in kinds)} |",
        f"|---|---|---|{'---|' * len(kinds)}{'---|' * len(kinds)}",
    ]
    for row in rows:
        lines.append(f"| {row['press']} | {row['budget'] * 100:.0f}% | {row['share'] * 100:.1f}% | {' | '.join(acc(row, k) for k in kinds)} | {' | '.join(relative(row, k) for k in kinds)} |")
    lines += ["", "Command: `" + " ".join(["python3", "bench/kvpress_peer.py", f"--items {Path(args.items).name}", f"--presses {args.presses}", f"--budgets {args.budgets}", f"--max-new-tokens {args.max_new_tokens}"] + ([f"--limit {args.limit}"] if args.limit else [])) + "`", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
