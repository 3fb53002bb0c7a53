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


class Prefilled:
    """Turn 1 prefilled once with the full cache, with what every attention layer's forward saw.

    A press's hook changes only the cache, after each layer's attention has run on the whole
    prompt: the hidden states and the first answer token are the same under every press. So each
    press is applied to these recorded inputs exactly as its hook would (`press.compress(module,
    hidden_states, keys, values, attentions, kwargs)`), instead of prefilling the file once per
    press on two shared cores. `check_against_hook` confirms it on one item.
    """

    @torch.no_grad()
    def __init__(self, model, ids: list[int]):
        language_model = model.model
        self.model = model
        self.ids = ids
        self.seen: list[dict] = [{} for _ in language_model.layers]
        hooks = []
        for i, layer in enumerate(language_model.layers):
            layer.self_attn.rotary_emb = language_model.rotary_emb  # as BasePress.__call__ sets it

            def record(module, args, kwargs, output, i=i):
                self.seen[i] = {k: v for k, v in kwargs.items() if k != "past_key_values"}
                self.seen[i]["attentions"] = output[1]

            hooks.append(layer.self_attn.register_forward_hook(record, with_kwargs=True))
        try:
            self.cache = DynamicCache()
            out = model(input_ids=torch.tensor([ids]), past_key_values=self.cache, position_ids=torch.arange(len(ids)).unsqueeze(0), use_cache=True, logits_to_keep=1)
        finally:
            for hook in hooks:
                hook.remove()
        self.logits = out.logits[0, -1]

    @torch.no_grad()
    def compressed(self, press) -> DynamicCache:
        cache = DynamicCache()
        if press is not None:
            press.post_init_from_model(self.model)
        for i, layer in enumerate(self.model.model.layers):
            keys, values = self.cache.layers[i].keys, self.cache.layers[i].values
            if press is not None:
                seen = self.seen[i]
                keys, values = press.compress(layer.self_attn, seen["hidden_states"], keys, values, seen["attentions"], seen)
            cache.update(keys.clone(), values.clone(), i)
        return cache

    @torch.no_grad()
    def check_against_hook(self, press) -> None:
        """The press run as kvpress runs it (its hook, during a prefill) keeps the same keys."""
        cache = DynamicCache()
        with press(self.model):
            self.model(input_ids=torch.tensor([self.ids]), past_key_values=cache, position_ids=torch.arange(len(self.ids)).unsqueeze(0), use_cache=True, logits_to_keep=1)
        replayed = self.compressed(press)
        for i in range(len(self.model.model.layers)):
            if not torch.equal(cache.layers[i].keys, replayed.layers[i].keys):
                raise SystemExit(f"replaying {type(press).__name__} differs from its hook at layer {i}: the replay is not exact here")


@torch.no_grad()
def converse(model, tokenizer, item: dict, prefilled: Prefilled, press, max_new_tokens: int) -> tuple[list[str], int]:
    """The item's turns on one cache, turn 1 compressed by `press`. Returns the answers and the
    cache length right after turn 1's prefill."""
    cache = prefilled.compressed(press)
    kept = cache.get_seq_length()
    messages: list[dict[str, str]] = []
    answers: list[str] = []
    fed = len(prefilled.ids)  # true positions used so far
    answers_ended = True
    for t, turn in enumerate(item["turns"]):
        messages.append({"role": "user", "content": turn["content"]})
        if t == 0:
            logits = prefilled.logits
        else:
            # ChatML continuation after the last answer (which stopped at <|im_end|> or at the limit).
            tail = "" if answers_ended else "<|im_end|>"
            ids = tokenizer(f"{tail}\n<|im_start|>user\n{turn['content']}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False).input_ids
            out = model(input_ids=torch.tensor([ids]), past_key_values=cache, position_ids=torch.arange(fed, fed + len(ids)).unsqueeze(0), use_cache=True, logits_to_keep=1)
            fed += len(ids)
            logits = out.logits[0, -1]
        generated: list[int] = []
        answers_ended = False
        for _ in range(max_new_tokens):
            token = int(torch.argmax(logits))
            generated.append(token)
            answers_ended = token == EOS
            step = model(input_ids=torch.tensor([[token]]), past_key_values=cache, position_ids=torch.tensor([[fed]]), use_cache=True)
            fed += 1
            if answers_ended:
                break
            logits = step.logits[0, -1]
        answer = tokenizer.decode(generated, skip_special_tokens=True)
        answers.append(answer)
        messages.append({"role": "assistant", "content": answer})
    return answers, kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", required=True, help="JSON from tools/eval.ts --later-turns --export-items")
    parser.add_argument("--model", default=str(REPO / ".models" / "smollm2-135m-instruct"))
    parser.add_argument("--presses", default="snapkv,expected_attention,knorm,streaming_llm")
    parser.add_argument("--budgets", default="0.2,0.1,0.05", help="shares of turn 1's prompt kept")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="first N items only")
    parser.add_argument("--kinds", default="", help="only items of these kinds (comma-separated), e.g. later-lookup")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "kvpress-peer.md"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-correct", action="store_true", help="skip the presses on items the full cache answers wrong (they count in no relative figure)")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="check the replay of each press against its hook on the first item")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exported = json.loads(Path(args.items).read_text())
    kinds_wanted = [k for k in args.kinds.split(",") if k]
    items = [i for i in exported["items"] if not kinds_wanted or i["kind"] in kinds_wanted][: args.limit or None]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa").eval()

    prefilled: dict[str, Prefilled] = {}

    def prefill(item: dict) -> Prefilled:
        if item["id"] not in prefilled:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": item["turns"][0]["content"]}], add_generation_prompt=True, tokenize=True)
            prefilled.clear()  # one item's recording at a time (30 layers of hidden states)
            prefilled[item["id"]] = Prefilled(model, ids)
        return prefilled[item["id"]]

    def score(press_name: str | None, budget: float, batch: list[dict]) -> dict:
        right: dict[str, list[bool]] = {}
        shares: list[float] = []
        answers: list[str] = []
        for item in batch:
            press = None if press_name is None else make_press(press_name, 1 - budget)
            turn1 = prefill(item)
            said, kept = converse(model, tokenizer, item, turn1, press, args.max_new_tokens)
            last = item["turns"][-1]
            right.setdefault(item["kind"], []).append(last["expected"].lower() in said[-1].lower())
            shares.append(kept / len(turn1.ids))
            answers.append(said[-1])
            print(f"{press_name or 'full'} {budget:.2f} {item['id']}: {said[-1]!r} (expected {last['expected']}; kept {kept}/{len(turn1.ids)})", flush=True)
        return {"press": press_name or "full", "budget": budget, "right": right, "share": sum(shares) / len(shares), "answers": answers}

    names = [p for p in args.presses.split(",") if p]
    budgets = [float(b) for b in args.budgets.split(",")]
    started = time.time()
    if names and args.check:
        # The replay of each press against its own hook, on the first item at the first budget.
        for name in names:
            prefill(items[0]).check_against_hook(make_press(name, 1 - budgets[0]))
        print(f"replay = hook for {', '.join(names)} on {items[0]['id']}", flush=True)
        checked = f"Each press's replay was checked against its own hook (identical kept keys in every layer) on {items[0]['id']}."
    else:
        checked = "The replay was not checked against the hooks in this run (--no-check)."
    # Item by item (one turn-1 recording at a time), every configuration on each.
    rows = [{"press": "full", "budget": 1.0, "right": {}, "share": 0.0, "answers": []}] + [{"press": n, "budget": b, "right": {}, "share": 0.0, "answers": []} for n in names for b in budgets]
    done: list[dict] = []
    dropped: list[str] = []
    for item in items:
        ones = []
        for row in rows:
            one = score(None if row["press"] == "full" else row["press"], row["budget"], [item])
            ones.append(one)
            if args.keep_correct and row["press"] == "full" and not all(all(oks) for oks in one["right"].values()):
                break
        if len(ones) < len(rows):
            dropped.append(item["id"])
            continue
        done.append(item)
        for row, one in zip(rows, ones):
            for kind, oks in one["right"].items():
                row["right"].setdefault(kind, []).extend(oks)
            row["share"] += one["share"]
            row["answers"] += one["answers"]
        # Written after every item, so a stopped run keeps what it finished.
        write_report(args, exported, rows, done, dropped, len(items), checked, time.time() - started)


def write_report(args, exported: dict, rows: list[dict], items: list[dict], dropped: list[str], total: int, checked: str, seconds: float) -> None:
    full = rows[0]

    kinds = list(full["right"])
    lengths = sorted({i["fileTokens"] for i in items if i.get("fileTokens")})

    def relative(row: dict, kind: str) -> str:
        base = [i for i, ok in enumerate(full["right"][kind]) if ok]
        if not base:
            return "–"
        return f"{sum(row['right'][kind][i] for i in base) / len(base):.2f}"

    def same(row: dict, kind: str) -> str:
        """Items of `kind` whose last answer is the full cache's, right or wrong."""
        idx = [i for i, item in enumerate(items) if item["kind"] == kind]
        return f"{sum(row['answers'][i] == full['answers'][i] for i in idx)}/{len(idx)}"

    def acc(row: dict, kind: str) -> str:
        xs = row["right"][kind]
        return f"{sum(xs)}/{len(xs)}"

    lines = [
        f"# kvpress {version('kvpress')} on the later-turn items (SmolLM2-135M-Instruct, transformers {version('transformers')}, torch {version('torch')}, CPU float32)",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} · {len(items)} items{f' (of {total}: {len(dropped)} dropped, the full cache answered them wrong: ' + ', '.join(dropped) + ')' if dropped else ''}{' (the run went on)' if len(items) + len(dropped) < total else ''} from `{Path(args.items).name}` (seed {exported.get('seed')}; file lengths {lengths} tokens) · {args.max_new_tokens} new tokens per answer · {seconds:.0f} s on {args.threads} shared cores",
        "",
        checked + " Protocol: turn 1 (the file and a request to acknowledge it) is prefilled under the press, which keeps the budget's share of it in every layer and head; the later turns (unrelated questions, then the question about one line) are appended to that cache uncompressed, at their true positions, and answered greedily. See the docstring of bench/kvpress_peer.py.",
        "",
        "relative: right under the press among the items right with the full cache; same answer: the last answer is the full cache's, word for word (right or wrong). Full cache, right answers by kind: " + " · ".join(f"{k} {acc(full, k)}" for k in kinds),
        "",
        f"| press | budget | share of turn 1 kept | {' | '.join(f'{k} right' for k in kinds)} | {' | '.join(f'{k} relative' for k in kinds)} | {' | '.join(f'{k} same answer as full' for k in kinds)} |",
        f"|---|---|---|{'---|' * len(kinds)}{'---|' * len(kinds)}{'---|' * len(kinds)}",
    ]
    for row in rows:
        lines.append(f"| {row['press']} | {row['budget'] * 100:.0f}% | {row['share'] / max(1, len(items)) * 100:.1f}% | {' | '.join(acc(row, k) for k in kinds)} | {' | '.join(relative(row, k) for k in kinds)} | {' | '.join(same(row, k) for k in kinds)} |")
    lines += ["", "Command: `" + " ".join(["python3", "bench/kvpress_peer.py", f"--items {Path(args.items).name}", f"--presses {args.presses}", f"--budgets {args.budgets}", f"--max-new-tokens {args.max_new_tokens}"] + ([f"--limit {args.limit}"] if args.limit else []) + ([f"--kinds {args.kinds}"] if args.kinds else []) + (["--keep-correct"] if args.keep_correct else []) + ([] if args.check else ["--no-check"])) + "`", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
