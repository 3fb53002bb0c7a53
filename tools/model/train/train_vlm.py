#!/usr/bin/env python3
"""Train the project's small embedded LLaVA model from scratch (seeded, resumable, curriculum).

Builds a LlavaForConditionalGeneration (SigLIP vision tower with small patches, GELU MLP
projector, Llama text decoder), its own byte-level BPE tokenizer with a chat template that marks
every image ("image 3: <image>"), generates all training data on the fly from seeded generators,
trains in curriculum stages, checkpoints, resumes, evaluates held-out accuracy per kind, measures
the attention mass on the asked image / line, and exports the HF folder the TypeScript runtime
loads (same file layout as tools/model/make_tiny.py writes).

See tools/model/train/README.md for the commands.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    SiglipImageProcessor,
    SiglipVisionConfig,
)
from transformers.generation import GenerationConfig  # noqa: E402

# ============================================================================ configuration

PRESETS = {
    # Shipped default: 9.76 M parameters, 19.5 MB in fp16.
    "default": dict(
        image_size=64, patch_size=8, v_hidden=192, v_layers=4, v_heads=4, v_ffn=768,
        t_hidden=320, t_layers=6, t_heads=5, t_kv_heads=5, t_ffn=864, vocab=1024, max_pos=2048,
        batch=32, lr=1e-3, vision_lr=2e-3,
        steps_vision=3000, steps_single=4000, steps_multi=12000, steps_lookup=20000,
        lookup_min_lines=2, lookup_max_lines=64, eval_every=1000, ckpt_every=500, eval_n=60,
    ),
    # Shipped (sidecar/model): what 2 CPU cores train in under an hour, with pointer supervision.
    "embedded": dict(
        image_size=64, patch_size=8, v_hidden=96, v_layers=3, v_heads=4, v_ffn=384,
        t_hidden=128, t_layers=3, t_heads=4, t_kv_heads=4, t_ffn=384, vocab=1024, max_pos=2048,
        batch=16, lr=1e-3, vision_lr=2e-3, warmup=100, questions=5, embed_std=4.0, freeze_vision=True,
        steps_vision=14000, steps_single=500, steps_multi=3000, steps_lookup=9000,
        lookup_min_lines=2, lookup_max_lines=64, eval_every=2500, ckpt_every=500, eval_n=40,
        extra={"mix_lookup": {"single": 0.2, "multi": 0.15, "followup": 0.15, "lookup": 0.5}},
    ),
    # CPU smoke test: a few minutes on 2 cores.
    "tiny": dict(
        image_size=64, patch_size=8, v_hidden=64, v_layers=2, v_heads=4, v_ffn=128,
        t_hidden=96, t_layers=2, t_heads=4, t_kv_heads=4, t_ffn=192, vocab=512, max_pos=2048,
        batch=8, lr=2e-3, vision_lr=2e-3,
        steps_vision=40, steps_single=30, steps_multi=30, steps_lookup=30,
        lookup_min_lines=2, lookup_max_lines=12, eval_every=50, ckpt_every=25, eval_n=8, warmup=10,
    ),
}

STAGES = ["vision", "single", "multi", "lookup"]
# Mixture of batch kinds per stage (each optimizer step draws ONE kind, so lengths in a batch match).
STAGE_MIX = {
    "single": {"single": 1.0},
    "multi": {"single": 0.2, "multi": 0.5, "followup": 0.3},
    "lookup": {"single": 0.1, "multi": 0.2, "followup": 0.2, "lookup": 0.5},
}

# Seeds: every training example is drawn from np.random.default_rng([TRAIN_STREAM, seed, step, i])
# with seed >= 0; held-out examples from default_rng([EVAL_STREAM, kind_id, i]). The two stream
# tags never coincide, so training and held-out sets are disjoint random streams. The repo's
# tools/eval/dataset.ts uses a different generator (mulberry32, seed 7) and is never trained on.
TRAIN_STREAM = 1_000_003
EVAL_STREAM = 7_777_777

# Colours / shapes: a superset of tools/eval/dataset.ts (red green blue yellow purple; circle square triangle).
COLOURS = {
    "red": (208, 32, 32), "green": (32, 160, 64), "blue": (32, 80, 208), "yellow": (224, 192, 32),
    "purple": (128, 48, 176), "orange": (240, 128, 16), "pink": (240, 120, 190), "brown": (130, 80, 30),
    "grey": (128, 128, 128), "cyan": (30, 200, 220),
}
EVAL_COLOURS = ["red", "green", "blue", "yellow", "purple"]
SHAPES = ["circle", "square", "triangle", "diamond", "star"]
EVAL_SHAPES = ["circle", "square", "triangle"]
# Setting names of the generated lookup files, shared with tools/eval/dataset.ts. Each is one
# token of the trained tokenizer, written in backticks in questions so that the question and the
# file spell it with the same token.
LOOKUP_KEYS = json.loads((Path(__file__).resolve().parents[2] / "eval" / "lookup-keys.json").read_text())
WORDS = ["CAT", "DOG", "SUN", "BOX", "KEY", "MAP", "CUP", "PEN", "HAT", "BUS", "OWL", "JAR"]

# Chat template: LLaVA-1.5 "USER: ... ASSISTANT: answer</s>", messages joined by one space;
# every image of the conversation is rendered "image k: <image>\n" with k counted across turns.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(k=0) -%}"
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
    "{%- if item['type'] == 'image' -%}{%- set ns.k = ns.k + 1 -%}{{ 'image ' ~ ns.k ~ ': <image>\\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)

PAD, BOS, EOS = 0, 1, 2


@dataclass
class Config:
    preset: str = "default"
    seed: int = 0
    image_size: int = 64
    patch_size: int = 8
    v_hidden: int = 192
    v_layers: int = 4
    v_heads: int = 4
    v_ffn: int = 768
    t_hidden: int = 320
    t_layers: int = 6
    t_heads: int = 5
    t_kv_heads: int = 5
    t_ffn: int = 864
    vocab: int = 1024
    max_pos: int = 2048
    batch: int = 32
    lr: float = 1e-3
    vision_lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    final_decay_frac: float = 0.2  # linear LR decay over the last fraction of the LAST stage
    steps_vision: int = 3000
    steps_single: int = 4000
    steps_multi: int = 12000
    steps_lookup: int = 20000
    lookup_min_lines: int = 2
    lookup_max_lines: int = 64
    questions: int = 4  # training conversations ask up to this many questions about one set of images / one file
    # Pointer supervision: the first `pointer_heads` heads of decoder layer `pointer_layer` are
    # trained (extra loss, this weight) to attend from each answer position to what it reads.
    pointer_weight: float = 1.0
    pointer_layer: int = -1
    pointer_heads: int = 1
    # Token embeddings start at this std (HF's default 0.02 is small next to what the first
    # layer adds, and copied digits were then not recoverable from the residual stream).
    embed_std: float = 1.0
    # Freeze the vision tower after its warm-up (LLaVA's recipe): trained on at the language
    # stages' LR it lost what it had learned within 1,000 steps (the warm-up heads fell to chance).
    freeze_vision: bool = False
    vision_lr_mult: float = 1.0  # the vision tower's LR relative to `lr` after the warm-up (when not frozen)
    eval_every: int = 1000
    ckpt_every: int = 500
    keep_ckpts: int = 3
    eval_n: int = 60
    extra: dict = field(default_factory=dict)

    def stage_bounds(self):
        out, start = [], 0
        for s in STAGES:
            n = getattr(self, f"steps_{s}")
            out.append((s, start, start + n))
            start += n
        return out

    @property
    def total_steps(self):
        return self.stage_bounds()[-1][2]

    @property
    def tokens_per_image(self):
        return (self.image_size // self.patch_size) ** 2


def stage_at(cfg: Config, step: int):
    for name, a, b in cfg.stage_bounds():
        if a <= step < b:
            return name, step - a, b - a
    return None, 0, 0


def lr_at(cfg: Config, step: int, stage: str) -> float:
    base = cfg.vision_lr if stage == "vision" else cfg.lr
    _, a, b = [x for x in cfg.stage_bounds() if x[0] == stage][0]
    w = min(1.0, (step - a + 1) / max(1, cfg.warmup))
    last_stage = [s for s, x, y in cfg.stage_bounds() if y > x][-1]
    if stage == last_stage and cfg.final_decay_frac > 0:
        start_decay = b - int((b - a) * cfg.final_decay_frac)
        if step >= start_decay:
            w *= max(0.05, (b - step) / max(1, b - start_decay))
    return base * w


# ============================================================================ data generation

_FONT_CACHE: dict = {}
FONT_FILES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
]


def font(idx: int, size: int):
    key = (idx, size)
    if key not in _FONT_CACHE:
        files = [f for f in FONT_FILES if os.path.exists(f)]
        if files:
            _FONT_CACHE[key] = ImageFont.truetype(files[idx % len(files)], size)
        else:  # Pillow's bundled font
            _FONT_CACHE[key] = ImageFont.load_default(size=size)
    return _FONT_CACHE[key]


def render(spec: dict, size: int, rng: np.random.Generator | None, eval_like: bool) -> Image.Image:
    """Coloured shape with a black digit or short word on white, drawn in a 64x64 frame (like
    tools/eval/dataset.ts: circle r=24, square 44, triangle, font-size 20 at y=40), then resized.
    Training images get jitter (position, size, font, background tint)."""
    S = 64
    bg = (255, 255, 255)
    if rng is not None and not eval_like and rng.random() < 0.3:
        bg = tuple(int(x) for x in rng.integers(225, 256, 3))
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    fill = COLOURS[spec["colour"]]
    if rng is not None and not eval_like:
        fill = tuple(int(np.clip(c + rng.integers(-18, 19), 0, 255)) for c in fill)
        dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        sc = float(rng.uniform(0.8, 1.1))
        fsize = int(rng.integers(16, 25))
        fidx = int(rng.integers(0, 8))
    else:
        dx = dy = 0
        sc = 1.0
        fsize, fidx = 20, 0
    cx, cy = 32 + dx, 32 + dy
    r = 24 * sc
    sh = spec["shape"]
    if sh == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif sh == "square":
        h = 22 * sc
        d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif sh == "triangle":
        d.polygon([(cx, cy - 26 * sc), (cx + 26 * sc, cy + 24 * sc), (cx - 26 * sc, cy + 24 * sc)], fill=fill)
    elif sh == "diamond":
        d.polygon([(cx, cy - 28 * sc), (cx + 26 * sc, cy), (cx, cy + 28 * sc), (cx - 26 * sc, cy)], fill=fill)
    else:  # star
        pts = []
        for k in range(10):
            rr = (27 if k % 2 == 0 else 12) * sc
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=fill)
    text = spec.get("word") or str(spec["digit"])
    f = font(fidx, fsize if not spec.get("word") else max(13, fsize - 4))
    # SVG text y=40 is the baseline; anchor "ms" = middle / baseline.
    d.text((cx, cy + 8), text, fill=(0, 0, 0), font=f, anchor="ms")
    if size != S:
        img = img.resize((size, size), Image.BICUBIC)
    return img


def rand_spec(rng, eval_like: bool, with_word: bool = False) -> dict:
    cols = EVAL_COLOURS if eval_like else list(COLOURS)
    shps = EVAL_SHAPES if eval_like else SHAPES
    spec = {"colour": cols[rng.integers(len(cols))], "shape": shps[rng.integers(len(shps))], "digit": int(rng.integers(10))}
    if with_word:
        spec["word"] = WORDS[rng.integers(len(WORDS))]
    return spec


def q_attr(attr: str, where: str) -> str:
    return {
        "colour": f"What colour is the shape{where}?",
        "shape": f"Which shape is shown{where}?",
        "digit": f"Which digit is written{where}?",
        "word": f"Which word is written{where}?",
    }[attr]


def answer_of(spec: dict, attr: str) -> str:
    return str(spec[attr]) if attr != "digit" else str(spec["digit"])


def make_example(kind: str, rng: np.random.Generator, cfg: Config, eval_like=False, lines: int | None = None, attr: str | None = None,
                 n_images: int | None = None, questions: int = 1):
    """Returns dict(turns=[(user_text, n_images_in_turn, answer)], images=[PIL], meta)."""
    if kind == "single":
        attr = attr or ["colour", "shape", "digit", "word"][rng.integers(4)]
        spec = rand_spec(rng, eval_like, with_word=(attr == "word"))
        where = "" if attr != "digit" else " in the image"
        q = q_attr(attr, where) if rng.random() < 0.7 or eval_like else q_attr(attr, " in image 1")
        return dict(turns=[(q, 1, answer_of(spec, attr))], images=[render(spec, cfg.image_size, rng, eval_like)], meta=dict(asked=0, n=1, asks=[0]))
    if kind in ("multi", "followup"):
        n = n_images or int(rng.integers(2, 5))
        specs = [rand_spec(rng, eval_like) for _ in range(n)]
        k = int(rng.integers(n))
        a1 = attr or (["colour", "shape", "digit"][rng.integers(3)] if not eval_like else "colour")
        turns = [(q_attr(a1, f" in image {k + 1}"), n, answer_of(specs[k], a1))]
        meta = dict(asked=k, n=n, asks=[k])
        # Training conversations may ask several follow-ups (more answers per image encoding);
        # the held-out follow-up has exactly one, about the digit (as tools/eval/dataset.ts).
        follow = 0 if kind == "multi" else 1 if eval_like else int(rng.integers(1, max(2, questions)))
        for _ in range(follow):
            j = int(rng.integers(n))
            a2 = "digit" if eval_like else ["colour", "shape", "digit"][rng.integers(3)]
            q2 = {"colour": f"And what colour is the shape in image {j + 1}?", "shape": f"And which shape is shown in image {j + 1}?",
                  "digit": f"And which digit is written in image {j + 1}?"}[a2]
            turns.append((q2, 0, answer_of(specs[j], a2)))
            meta["asked"] = j
            meta["asks"].append(j)
        return dict(turns=turns, images=[render(s, cfg.image_size, rng, eval_like) for s in specs], meta=meta)
    if kind == "lookup":
        n = min(lines or 4, len(LOOKUP_KEYS))
        names = rng.choice(len(LOOKUP_KEYS), size=n, replace=False)
        keys = [(LOOKUP_KEYS[i], int(rng.integers(10000))) for i in names]
        t = int(rng.integers(n))
        body = "\n".join(f"{k} = {v}" for k, v in keys)
        name = "settings.py" if eval_like else ["settings.py", "config.py", "env.txt", "values.ini"][rng.integers(4)]
        # tools/eval + sidecar/src/session/conversation.ts withFiles(): "File NAME:\n```\n...\n```\n" + "\n" + question
        text = f"File {name}:\n```\n{body}\n```\n\nWhat is the value of `{keys[t][0]}`?"
        turns, asks = [(text, 0, str(keys[t][1]))], [t]
        for _ in range(0 if eval_like else int(rng.integers(0, questions))):  # training: follow-up lookups
            j = int(rng.integers(n))
            turns.append((f"And what is the value of `{keys[j][0]}`?", 0, str(keys[j][1])))
            asks.append(j)
        return dict(turns=turns, images=[], meta=dict(asked=t, n=n, asks=asks, key=keys[t][0], lines=[f"{k} = {v}" for k, v in keys]))
    raise ValueError(kind)


def conversation_pieces(ex) -> list[tuple[str, bool]]:
    """The chat-template rendering split into (text, is_answer) pieces; must equal the template."""
    pieces, k = [], 0
    for i, (user, nimg, ans) in enumerate(ex["turns"]):
        s = ("" if i == 0 else " ") + "USER: "
        for _ in range(nimg):
            k += 1
            s += f"image {k}: <image>\n"
        s += user + " ASSISTANT:"
        pieces.append((s, False))
        pieces.append((" " + ans + "</s>", True))
    return pieces


def messages_of(ex, upto: int | None = None, with_last_answer=True):
    msgs = []
    turns = ex["turns"] if upto is None else ex["turns"][:upto]
    for i, (user, nimg, ans) in enumerate(turns):
        msgs.append({"role": "user", "content": [{"type": "image"}] * nimg + [{"type": "text", "text": user}]})
        if with_last_answer or i < len(turns) - 1:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": ans}]})
    return msgs


# ============================================================================ tokenizer


def tokenizer_corpus(cfg: Config) -> list[str]:
    rng = np.random.default_rng([TRAIN_STREAM, cfg.seed, 424242])
    lines = []
    for i in range(3000):
        kind = ["single", "multi", "followup", "lookup"][i % 4]
        ex = make_example(kind, rng, cfg, lines=int(rng.integers(2, 9))) if kind == "lookup" else _text_only_example(kind, rng, cfg)
        lines.append("".join(p for p, _ in conversation_pieces(ex)))
    lines += [" ".join(COLOURS), " ".join(SHAPES), " ".join(WORDS), "0 1 2 3 4 5 6 7 8 9"] * 50
    lines += ["\n".join(f"{k} = 1" for k in LOOKUP_KEYS)] * 50
    return lines


def _text_only_example(kind, rng, cfg):
    # Same text as make_example without rendering images (fast).
    n = 1 if kind == "single" else int(rng.integers(2, 5))
    k = int(rng.integers(n)) + 1
    attr = ["colour", "shape", "digit", "word"][rng.integers(4 if n == 1 else 3)]
    spec = rand_spec(rng, False, with_word=True)
    turns = [(q_attr(attr, f" in image {k}" if n > 1 else ""), n, answer_of(spec, attr))]
    if kind == "followup":
        turns.append((f"And which digit is written in image {k}?", 0, str(spec["digit"])))
    return dict(turns=turns, images=[], meta={})


def build_tokenizer(cfg: Config) -> PreTrainedTokenizerFast:
    """Byte-level BPE, ids <pad>=0 <s>=1 </s>=2 <image>=3, digits split one per token (so the
    model copies numbers digit by digit), trained deterministically on generated text."""
    specials = ["<pad>", "<s>", "</s>", "<image>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2, show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(cfg), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A:0", pair="<s> $A:0 <s> $B:1", special_tokens=[("<s>", BOS)])
    assert tok.token_to_id("<image>") == 3 and tok.token_to_id("</s>") == EOS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token=None,
        model_max_length=cfg.max_pos, clean_up_tokenization_spaces=False, chat_template=CHAT_TEMPLATE,
        padding_side="left", model_input_names=["input_ids", "attention_mask"],
    )


class Encoder:
    def __init__(self, tokenizer, cfg: Config):
        self.tok = tokenizer
        self.cfg = cfg
        self.image_id = tokenizer.convert_tokens_to_ids("<image>")
        self._cache: dict = {}

    def ids(self, text: str) -> list[int]:
        if text not in self._cache or len(self._cache) > 50000:
            if len(self._cache) > 50000:
                self._cache.clear()
            self._cache[text] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def encode(self, ex, expand=True):
        """input_ids (image tokens expanded), labels (answer tokens + </s> only), and the span
        index of each answer piece."""
        ids, labels, spans = [BOS], [-100], []
        for text, is_ans in conversation_pieces(ex):
            piece = self.ids(text)
            if expand:
                out = []
                for t in piece:
                    out.extend([t] * self.cfg.tokens_per_image if t == self.image_id else [t])
                piece = out
            if is_ans:
                spans.append((len(ids), len(ids) + len(piece)))
            ids.extend(piece)
            labels.extend(piece if is_ans else [-100] * len(piece))
        return ids, labels, spans

    def pointers(self, ex):
        """Attention targets for the two supervised heads, as [(query_position, [targets])]:

        * `read` (a head of the last layer): each position that predicts an answer token reads
          what the answer comes from: all tokens of the asked image, or the asked line's token
          that the answer copies next (its value digits, then the newline for </s>).
        * `bind` (a head of the first layer): each image token looks at its label digit
          ("image 2:"), each value token of the file at its line's key, and each
          answer-predicting position at the image number or key asked in its question. This is
          what lets the `read` head match the question against the right image or line.
        """
        at, image_pos = [], []  # per piece: (expanded position, char span) of each token; image starts
        pos = 1  # after <s>
        pieces = conversation_pieces(ex)
        for pi, (text, _) in enumerate(pieces):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            starts = []
            for t, off in zip(enc["input_ids"], enc["offset_mapping"]):
                starts.append((pos, off))
                if t == self.image_id:
                    image_pos.append(pos)
                pos += self.cfg.tokens_per_image if t == self.image_id else 1
            at.append(starts)

        def token_at(pi: int, char: int) -> int:
            return next(p for p, (a, b) in at[pi] if a <= char < b)

        asks = ex["meta"]["asks"]
        answers = [(at[2 * i + 1][0][0], at[2 * i + 1][-1][0] + 1) for i in range(len(asks))]  # answer token spans
        bind, read = [], []
        first = pieces[0][0]
        if ex["images"]:
            P = self.cfg.tokens_per_image
            labels = [token_at(0, m.start(1)) for m in re.finditer(r"image (\d+): <image>", first)]
            for img, label in zip(image_pos, labels):
                bind.extend((q, [label]) for q in range(img, img + P))
            for i, ((a, b), k) in enumerate(zip(answers, asks)):
                user = pieces[2 * i][0]
                refs = [m.start(1) for m in re.finditer(r"image (\d+)\?", user)]
                if refs:  # "What colour is the shape?" about the only image names none
                    bind.extend((q, [token_at(2 * i, refs[-1])]) for q in range(a - 1, b - 1))
                read.extend((q, list(range(image_pos[k], image_pos[k] + P))) for q in range(a - 1, b - 1))
            return bind, read
        lines, off = ex["meta"]["lines"], first.index("```\n") + 4
        value_tokens = []
        for line in lines:
            key = token_at(0, off)
            lo, hi = off + line.index(" = ") + 2, off + len(line) + 1  # " value\n"
            vals = [p for p, (a, _) in at[0] if lo <= a < hi]
            value_tokens.append(vals)
            bind.extend((q, [key]) for q in vals)
            off += len(line) + 1
        for i, ((a, b), j) in enumerate(zip(answers, asks)):
            user = pieces[2 * i][0]
            ref = token_at(2 * i, user.rindex("`", 0, user.rindex("`")) + 1)
            bind.extend((q, [ref]) for q in range(a - 1, b - 1))
            if len(value_tokens[j]) == b - a:  # else the file and the answer tokenized differently
                read.extend((a - 1 + m, [t]) for m, t in enumerate(value_tokens[j]))
        return bind, read


# ============================================================================ model


def model_vocab(tokenizer) -> int:
    """Embedding rows: the tokenizer's size (the BPE may stop below cfg.vocab) rounded up to 64."""
    return (len(tokenizer) + 63) // 64 * 64


def build_config(cfg: Config, image_token_index: int, vocab_size: int) -> LlavaConfig:
    vision = SiglipVisionConfig(
        hidden_size=cfg.v_hidden, intermediate_size=cfg.v_ffn, num_hidden_layers=cfg.v_layers,
        num_attention_heads=cfg.v_heads, num_channels=3, image_size=cfg.image_size, patch_size=cfg.patch_size,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
        vision_use_head=False,  # LLaVA reads hidden states; SigLIP's pooling head would be dead weight
    )
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.t_hidden, intermediate_size=cfg.t_ffn, num_hidden_layers=cfg.t_layers,
        num_attention_heads=cfg.t_heads, num_key_value_heads=cfg.t_kv_heads, head_dim=cfg.t_hidden // cfg.t_heads,
        hidden_act="silu", max_position_embeddings=cfg.max_pos, rms_norm_eps=1e-5, rope_theta=10000.0,
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    return LlavaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=image_token_index,
        projector_hidden_act="gelu", vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_seq_length=cfg.tokens_per_image, multimodal_projector_bias=True, tie_word_embeddings=False, pad_token_id=PAD,
    )


class VisionHeads(torch.nn.Module):
    """Stage-1 classification heads on the projector output (mean + attention pooled)."""

    def __init__(self, d: int):
        super().__init__()
        self.query = torch.nn.Parameter(torch.randn(4, d) / math.sqrt(d))
        self.colour = torch.nn.Linear(2 * d, len(COLOURS))
        self.shape = torch.nn.Linear(2 * d, len(SHAPES))
        self.digit = torch.nn.Linear(2 * d, 10)
        self.word = torch.nn.Linear(2 * d, len(WORDS) + 1)  # last class: no word

    def forward(self, feats):  # feats: B x T x d
        outs = []
        for i, head in enumerate([self.colour, self.shape, self.digit, self.word]):
            att = torch.softmax(feats @ self.query[i] / math.sqrt(feats.shape[-1]), dim=1)
            pooled = torch.cat([(att.unsqueeze(-1) * feats).sum(1), feats.mean(1)], -1)
            outs.append(head(pooled))
        return outs


class PointerLoss:
    """Auxiliary loss on one decoder layer's attention: -log of the attention mass the supervised
    heads put on the target positions, for the answer-predicting rows only. It recomputes those
    rows from the layer's captured input (q for N rows, k for all positions), so no L x L map is
    built and the model's own (SDPA) attention is untouched. Without it, reading the asked image
    or line did not emerge in hours of CPU training (tools/model/train/README.md)."""

    def __init__(self, model, layer: int, heads: int):
        self.attn = model.model.language_model.layers[layer].self_attn
        self.heads = heads
        self.captured = None
        self.attn.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module, args, kwargs):
        self.captured = (kwargs.get("hidden_states", args[0] if args else None), kwargs["position_embeddings"])

    @staticmethod
    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def __call__(self, rows, targets, attention_mask):
        h, (cos, sin) = self.captured
        cos, sin = cos.expand(h.shape[0], -1, -1), sin.expand(h.shape[0], -1, -1)  # batch dim may be 1
        a, S = self.attn, self.heads
        hd, H = a.head_dim, a.config.num_attention_heads
        rep = H // a.config.num_key_value_heads
        kv_heads = [i // rep for i in range(S)]
        total, count = 0.0, 0
        T = h.shape[1]
        for bi in rows[:, 0].unique().tolist():  # per sequence: N_b x S x T logits, never B x N x T
            sel = rows[:, 0] == bi
            qpos = rows[sel, 1]
            q = a.q_proj(h[bi, qpos]).view(-1, H, hd)[:, :S]
            q = self._rope(q, cos[bi, qpos].unsqueeze(1), sin[bi, qpos].unsqueeze(1))
            k = a.k_proj(h[bi]).view(T, -1, hd)[:, kv_heads]
            k = self._rope(k, cos[bi].unsqueeze(1), sin[bi].unsqueeze(1))
            logits = torch.einsum("nsd,tsd->nst", q, k) * a.scaling
            allowed = (torch.arange(T, device=h.device)[None, :] <= qpos[:, None]) & attention_mask[bi].bool()[None, :]
            logp = torch.log_softmax(logits.float().masked_fill(~allowed[:, None, :], float("-inf")), -1)
            on_target = logp.masked_fill(~targets[sel][:, None, :], float("-inf")).logsumexp(-1)
            total = total - on_target.sum()
            count += on_target.numel()
        return total / max(1, count)


def image_features(model, pixel_values):
    f = model.get_image_features(pixel_values=pixel_values, vision_feature_layer=-1, vision_feature_select_strategy="full")
    return torch.stack(list(f)) if isinstance(f, (list, tuple)) else f


# ============================================================================ batches


def pixel_tensor(images, cfg: Config, device):
    if not images:
        return None
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    arr = (arr - 0.5) / 0.5
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(device)


def collate(examples, enc: Encoder, cfg: Config, device):
    seqs = [enc.encode(ex) for ex in examples]
    L = max(len(s[0]) for s in seqs)
    ids = torch.full((len(seqs), L), PAD, dtype=torch.long)
    lab = torch.full((len(seqs), L), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, (a, b, _) in enumerate(seqs):  # right padding for training
        ids[i, : len(a)] = torch.tensor(a)
        lab[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    images = [im for ex in examples for im in ex["images"]]
    return ids.to(device), lab.to(device), mask.to(device), pixel_tensor(images, cfg, device)


def collate_pointers(examples, enc: Encoder, L: int):
    """Per supervised head (bind, read): (batch index, query position) per row, rows x L target mask."""
    out = []
    per_ex = [enc.pointers(ex) for ex in examples]
    for which in range(2):
        rows, mask_rows = [], []
        for b, sets in enumerate(per_ex):
            for q, ts in sets[which]:
                rows.append((b, q))
                mask_rows.append(ts)
        mask = torch.zeros((len(rows), L), dtype=torch.bool)
        for r, ts in enumerate(mask_rows):
            mask[r, ts] = True
        out += [torch.tensor(rows, dtype=torch.long).reshape(-1, 2), mask]
    return out


def train_batch(cfg: Config, step: int, stage: str, frac: float):
    """The examples of one optimizer step: a pure function of (seed, step)."""
    rng = np.random.default_rng([TRAIN_STREAM, cfg.seed, step])
    if stage == "vision":
        specs = [rand_spec(rng, False, with_word=rng.random() < 0.4) for _ in range(cfg.batch)]
        return "vision", specs, [render(s, cfg.image_size, rng, False) for s in specs]
    mix = cfg.extra.get(f"mix_{stage}", STAGE_MIX[stage])
    kinds = list(mix)
    kind = kinds[rng.choice(len(kinds), p=np.array(list(mix.values())) / sum(mix.values()))]
    lines = None
    if kind == "lookup":
        hi = cfg.lookup_min_lines + (cfg.lookup_max_lines - cfg.lookup_min_lines) * (frac if stage == "lookup" else 0)
        hi = max(cfg.lookup_min_lines, int(round(hi)))
        lines = int(rng.integers(cfg.lookup_min_lines, hi + 1))
    n_images = int(rng.integers(2, 5)) if kind in ("multi", "followup") else None
    exs = [make_example(kind, rng, cfg, lines=lines, n_images=n_images, questions=cfg.questions) for _ in range(cfg.batch)]
    return kind, exs, None


class StepData(torch.utils.data.Dataset):
    """Item `step` = the collated CPU tensors of that optimizer step (a pure function of seed and
    step), so DataLoader workers can build batches ahead without changing what is trained on."""

    def __init__(self, cfg: Config, enc: Encoder):
        self.cfg, self.enc = cfg, enc

    def __len__(self):
        return self.cfg.total_steps

    def __getitem__(self, step: int):
        stage, k, n = stage_at(self.cfg, step)
        kind, exs, images = train_batch(self.cfg, step, stage, k / max(1, n))
        if kind == "vision":
            return step, kind, dict(pv=pixel_tensor(images, self.cfg, "cpu"), targets=vision_targets(exs, "cpu"))
        ids, lab, mask, pv = collate(exs, self.enc, self.cfg, "cpu")
        bind_rows, bind_targets, read_rows, read_targets = collate_pointers(exs, self.enc, ids.shape[1])
        return step, kind, dict(ids=ids, lab=lab, mask=mask, pv=pv, bind_rows=bind_rows, bind_targets=bind_targets,
                                read_rows=read_rows, read_targets=read_targets)


# ============================================================================ evaluation

EVAL_KINDS = {
    "single_colour": dict(kind="single", attr="colour"),
    "single_shape": dict(kind="single", attr="shape"),
    "single_digit": dict(kind="single", attr="digit"),
    "single_word": dict(kind="single", attr="word"),
    "multi_image": dict(kind="multi"),
    "follow_up": dict(kind="followup"),
    "lookup_4": dict(kind="lookup", lines=4),
    "lookup_16": dict(kind="lookup", lines=16),
    "lookup_60": dict(kind="lookup", lines=60),
}


def heldout(cfg: Config, name: str, n: int):
    spec = EVAL_KINDS[name]
    kid = list(EVAL_KINDS).index(name)
    out = []
    for i in range(n):
        rng = np.random.default_rng([EVAL_STREAM, kid, i])
        out.append(make_example(spec["kind"], rng, cfg, eval_like=True, lines=spec.get("lines"), attr=spec.get("attr")))
    return out


@torch.no_grad()
def greedy(model, enc: Encoder, ex, cfg: Config, device, max_new=8):
    """Greedy answer to the LAST turn, earlier turns teacher-forced with their true answers."""
    ids, _, spans = enc.encode(ex)
    prompt = ids[: spans[-1][0]]
    pv = pixel_tensor(ex["images"], cfg, device)
    x = torch.tensor([prompt], device=device)
    out = model(input_ids=x, pixel_values=pv, use_cache=True)
    past, gen = out.past_key_values, []
    for _ in range(max_new):
        t = int(out.logits[0, -1].argmax())
        if t == EOS:
            break
        gen.append(t)
        out = model(input_ids=torch.tensor([[t]], device=device), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return enc.tok.decode(gen).strip()


def evaluate(model, enc, cfg, device, n):
    model.eval()
    res = {}
    for name in EVAL_KINDS:
        exs = heldout(cfg, name, n)
        ok = sum(greedy(model, enc, ex, cfg, device) == ex["turns"][-1][2] for ex in exs)
        res[name] = ok / len(exs)
    model.train()
    return res


@torch.no_grad()
def vision_eval(model, heads, cfg, device, n):
    model.eval()
    rng = np.random.default_rng([EVAL_STREAM, 999])
    specs = [rand_spec(rng, True, with_word=(i % 2 == 1)) for i in range(n)]
    pv = pixel_tensor([render(s, cfg.image_size, None, True) for s in specs], cfg, device)
    logits = heads(image_features(model, pv))
    tg = vision_targets(specs, device)
    acc = {k: float((lg.argmax(-1) == t).float().mean()) for k, lg, t in zip(["colour", "shape", "digit", "word"], logits, tg)}
    model.train()
    return acc


def vision_targets(specs, device):
    cols, shps = list(COLOURS), SHAPES
    t = [
        [cols.index(s["colour"]) for s in specs],
        [shps.index(s["shape"]) for s in specs],
        [s["digit"] if "word" not in s else -100 for s in specs],
        [WORDS.index(s["word"]) if "word" in s else len(WORDS) for s in specs],
    ]
    return [torch.tensor(x, device=device) for x in t]


@torch.no_grad()
def attention_report(model, enc: Encoder, cfg: Config, device, n: int):
    """Attention from the answer position (last prompt token) summed over the asked image's
    tokens (or the asked line's tokens) vs the mean over all images (lines); averaged over
    layers, heads and examples. ratio > 1: attention concentrates on what was asked."""
    model.eval()
    prev = model.config._attn_implementation
    model.set_attn_implementation("eager")
    report = {}
    for name in ["multi_image", "follow_up", "lookup_16"]:
        asked_mass, mean_mass, per_layer, read_head = [], [], None, []
        for ex in heldout(cfg, name, n):
            ids, _, spans = enc.encode(ex)
            prompt = ids[: spans[-1][0]]
            if ex["images"]:
                pos = [i for i, t in enumerate(prompt) if t == enc.image_id]
                P = cfg.tokens_per_image
                groups = [pos[k * P:(k + 1) * P] for k in range(len(ex["images"]))]
            else:
                groups = line_token_groups(enc, ex, prompt)
            out = model(input_ids=torch.tensor([prompt], device=device), pixel_values=pixel_tensor(ex["images"], cfg, device), output_attentions=True)
            att = torch.stack([a[0, :, -1, :] for a in out.attentions])  # layers x heads x T
            masses = torch.stack([att[:, :, g].sum(-1) for g in groups], -1)  # layers x heads x groups
            a = ex["meta"]["asked"]
            asked_mass.append(float(masses[..., a].mean()))
            mean_mass.append(float(masses.mean()))
            pl = (masses[..., a].mean(-1) / masses.mean((-1, -2)).clamp_min(1e-9)).tolist()
            read_head.append(float(masses[cfg.pointer_layer, 0, a] / masses[cfg.pointer_layer, 0].mean().clamp_min(1e-9)))
            per_layer = pl if per_layer is None else [x + y for x, y in zip(per_layer, pl)]
        am, mm = float(np.mean(asked_mass)), float(np.mean(mean_mass))
        report[name] = dict(asked_mass=am, mean_mass_per_group=mm, ratio=am / max(mm, 1e-9), ratio_per_layer=[x / n for x in per_layer],
                            ratio_read_head=float(np.mean(read_head)), n=n)
    model.set_attn_implementation(prev)
    model.train()
    return report


def line_token_groups(enc: Encoder, ex, prompt):
    """Token positions of each file line, found by re-encoding the prompt prefix by prefix."""
    text = conversation_pieces(ex)[0][0]
    groups, start = [], text.index("```\n") + 4
    for line in ex["meta"]["lines"]:
        a = len(enc.tok(text[:start], add_special_tokens=False)["input_ids"]) + 1
        b = len(enc.tok(text[: start + len(line)], add_special_tokens=False)["input_ids"]) + 1
        groups.append(list(range(a, b)))
        start += len(line) + 1
    assert groups[-1][-1] < len(prompt)
    return groups


# ============================================================================ checkpoints / export


def save_ckpt(run: Path, step, model, heads, opt, cfg, log_state):
    d = run / "ckpt"
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"step_{step:07d}.pt.tmp"
    torch.save(
        dict(step=step, model=model.state_dict(), heads=heads.state_dict(), opt=opt.state_dict(), cfg=asdict(cfg),
             rng=dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                      cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None),
             log_state=log_state),
        tmp,
    )
    os.replace(tmp, d / f"step_{step:07d}.pt")
    for old in sorted(d.glob("step_*.pt"))[: -cfg.keep_ckpts]:
        old.unlink()


def latest_ckpt(run: Path):
    c = sorted((run / "ckpt").glob("step_*.pt"))
    return c[-1] if c else None


def export(model, tokenizer, cfg: Config, out: Path, dtype=torch.float16):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    m = LlavaForConditionalGeneration(model.config).eval()
    m.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    m = m.to(dtype)
    m.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    # Like make_tiny.py's llama fixture: one model.safetensors, legacy llava-hf key names.
    m.save_pretrained(out, safe_serialization=True, max_shard_size="1GB")
    ip = SiglipImageProcessor(
        do_resize=True, size={"height": cfg.image_size, "width": cfg.image_size}, resample=3, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
    )
    proc = LlavaProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=cfg.patch_size, vision_feature_select_strategy="full",
                          chat_template=CHAT_TEMPLATE, image_token="<image>", num_additional_image_tokens=0)
    proc.save_pretrained(out, save_jinja_files=False)
    return out


def check_export(out: Path, cfg: Config, enc: Encoder):
    """Reload with transformers; the processor's prompt + ids must equal the training encoding."""
    from transformers import AutoProcessor

    m = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    proc = AutoProcessor.from_pretrained(out)
    ex = make_example("followup", np.random.default_rng(5), cfg, eval_like=True, n_images=3)
    prompt = proc.apply_chat_template(messages_of(ex), tokenize=False)
    assert prompt == "".join(p for p, _ in conversation_pieces(ex)), (prompt,)
    got = proc(images=ex["images"], text=prompt, return_tensors="pt")["input_ids"][0].tolist()
    want = enc.encode(ex)[0]
    assert got == want, "processor ids differ from training ids"
    return sum(p.numel() for p in m.parameters())


def write_parity(out: Path, run: Path, cfg: Config, enc: Encoder):
    """Cases for check_runtime.ts: prompt ids and first-step logits of the EXPORTED folder as
    transformers computes them (fp16 weights read back in fp32), with the images as PNG files."""
    m = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    d = run / "parity"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    cases = []
    for name in ["single_colour", "single_digit", "multi_image", "lookup_16"]:
        ex = heldout(cfg, name, 1)[0]
        ids, _, spans = enc.encode(ex)
        prompt = ids[: spans[-1][0]]
        files = []
        for i, im in enumerate(ex["images"]):
            f = d / f"{name}-{i}.png"
            im.save(f, format="PNG")
            files.append(str(f.resolve()))
        with torch.no_grad():
            logits = m(input_ids=torch.tensor([prompt]), pixel_values=pixel_tensor(ex["images"], cfg, "cpu")).logits[0, -1]
        user, nimg, ans = ex["turns"][0]
        cases.append(dict(name=name, text=user, images=files, ids=prompt, logits=[float(x) for x in logits], expected=ans))
    (d / "cases.json").write_text(json.dumps(cases))
    return d / "cases.json"


def training_seconds(recs) -> float:
    """Wall time of the logged training, leaving out pauses between a stop and its --resume."""
    times = [r["time"] for r in recs if "time" in r]
    return float(sum(d for d in np.diff(times) if d < 300)) if len(times) > 1 else 0.0


def model_readme(cfg: Config, step: int, params: int, seconds: float, evals, attention, args, trained_on: str) -> str:
    """The exported folder's README: what the model is, how it was made, what it can read."""
    final = next((r["final_eval"] for r in reversed(evals) if "final_eval" in r), None)
    lines = [
        "# The embedded default model",
        "",
        "A small LLaVA model trained from scratch by `tools/model/train/train_vlm.py` (no downloaded",
        "weights; its own tokenizer; every training example generated from a seed). It is the default",
        "model of `npm run demo`, the sidecar and the extension (an empty `lookm.modelPath`).",
        "",
        f"* Architecture: SigLIP vision tower ({cfg.image_size}x{cfg.image_size} input, {cfg.patch_size}x{cfg.patch_size} patches,"
        f" {cfg.tokens_per_image} tokens per image, width {cfg.v_hidden}, {cfg.v_layers} layers), 2-layer GELU projector,"
        f" Llama decoder (width {cfg.t_hidden}, {cfg.t_layers} layers, {cfg.t_heads} heads, SwiGLU {cfg.t_ffn}, RoPE);"
        f" {params / 1e6:.2f} M parameters, fp16 safetensors.",
        f"* Made with: `python3 tools/model/train/train_vlm.py --run RUN --preset {cfg.preset} --device {args.device}"
        f" --export sidecar/model` (seed {cfg.seed}); {step} optimizer steps in {seconds / 60:.0f} minutes on {trained_on};"
        f" torch {torch.__version__}, transformers {__import__('transformers').__version__}.",
        "* Training data: pictures of a coloured circle, square, triangle, diamond or star with a black digit or",
        "  three-letter word; questions about one image or image k of several, with follow-ups; `name = value`",
        "  files (names from `tools/eval/lookup-keys.json`, 2 to 64 lines) and questions about a value.",
        "* Pointer supervision: besides the next-token loss, one head of the first layer is trained to look",
        "  from each image token at its label (\"image 2:\"), from each value at its name and from the answer at",
        "  the image number or name asked; one head of the last layer to look from the answer at the asked",
        "  image or at the value digit it copies next. See tools/model/train/README.md.",
        "",
        "## What it reads",
        "",
        "Only what it was trained on: such pictures (any size is resized to 64x64), questions phrased as in training",
        "(\"What colour is the shape in image 2?\", \"Which digit is written in image 1?\", \"Which word is",
        "written in the image?\", \"And which shape is shown in image 3?\", \"What is the value of `retries`?\")",
        "and `name = value` files. Anything else gets a confident wrong answer: it is a test instrument for",
        "the LOOK-M cache, not an assistant. Point `lookm.modelPath` at a real LLaVA checkpoint for that.",
        "",
    ]
    if final:
        n = cfg.eval_n
        lines += [f"## Held-out exact match (full cache, greedy, {n} items per kind, never trained on)", "",
                  "| kind | accuracy |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in final.items()]
        lines.append("")
    if attention:
        lines += ["## Attention from the answer position (last prompt token)", "",
                  "Mass on the asked image's tokens (the asked line's tokens) over the mean mass per image (line),",
                  "averaged over heads and examples; 1 = no preference.", "",
                  "| kind | all heads | per layer (all heads) | the supervised reading head |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['ratio']:.2f} | {' / '.join(f'{x:.2f}' for x in v['ratio_per_layer'])} | {v.get('ratio_read_head', float('nan')):.2f} |"
                  for k, v in attention.items()]
        lines.append("")
    lines += ["`TRAINING.json` holds the configuration and every evaluation of the run.", ""]
    return "\n".join(lines)


# ============================================================================ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="run folder (checkpoints, log.jsonl, tokenizer)")
    ap.add_argument("--preset", choices=list(PRESETS), default="default")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    ap.add_argument("--export", type=Path, help="write the final HF folder here (after training)")
    ap.add_argument("--export-only", action="store_true", help="export the last checkpoint without training")
    ap.add_argument("--final-eval", action="store_true", help="(re)run the final held-out evaluation and attention report")
    ap.add_argument("--reset-optimizer", action="store_true", help="on --resume, start AdamW afresh (e.g. after changing its parameter groups)")
    ap.add_argument("--workers", type=int, help="DataLoader workers building batches ahead (default 4 on cuda, 0 on cpu)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for forward/loss (fp32 weights, optimizer, checkpoints)")
    ap.add_argument("--max-steps", type=int, help="stop this invocation at this global step (then --resume)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Config field, e.g. steps_multi=20000 batch=64")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    run: Path = a.run
    device = torch.device(a.device)
    ck = latest_ckpt(run) if (a.resume or a.export_only) else None
    if (a.resume or a.export_only) and ck is None:
        print(f"no checkpoint in {run}/ckpt", file=sys.stderr)
        return 2
    if ck is None and (run / "ckpt").exists() and any((run / "ckpt").iterdir()):
        print(f"{run} already has checkpoints: pass --resume", file=sys.stderr)
        return 2

    if ck is not None:
        state = torch.load(ck, map_location="cpu", weights_only=False)
        cfg = Config(**state["cfg"])
    else:
        cfg = Config(**{**asdict(Config()), **PRESETS[a.preset], "preset": a.preset})
    for kv in a.set:  # overrides apply on resume too (e.g. lengthen a stage)
        k, v = kv.split("=", 1)
        cur = getattr(cfg, k)
        setattr(cfg, k, json.loads(v) if isinstance(cur, dict) else v.lower() in ("1", "true") if isinstance(cur, bool) else type(cur)(v))

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run.mkdir(parents=True, exist_ok=True)
    tok_dir = run / "tokenizer"
    if tok_dir.exists():
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = build_tokenizer(cfg)
        tokenizer.save_pretrained(tok_dir)
    enc = Encoder(tokenizer, cfg)
    # The piecewise encoding used for training must equal the chat template + whole-text encoding.
    for i, kind in enumerate(["single", "multi", "followup", "lookup"]):
        ex = make_example(kind, np.random.default_rng(i), cfg, lines=5)
        text = tokenizer.apply_chat_template(messages_of(ex), tokenize=False)
        assert text == "".join(p for p, _ in conversation_pieces(ex)), (text,)
        assert tokenizer(text)["input_ids"] == enc.encode(ex, expand=False)[0], kind

    model = LlavaForConditionalGeneration(build_config(cfg, enc.image_id, model_vocab(tokenizer)))
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, cfg.embed_std)
    heads = VisionHeads(cfg.t_hidden)
    bind_ptr = PointerLoss(model, 0, cfg.pointer_heads) if cfg.pointer_weight > 0 else None
    read_ptr = PointerLoss(model, cfg.pointer_layer, cfg.pointer_heads) if cfg.pointer_weight > 0 else None
    model.set_attn_implementation("sdpa")
    model.to(device).train()
    heads.to(device).train()
    params = [p for p in model.parameters()] + list(heads.parameters())
    vision_params = list(model.model.vision_tower.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg.vision_lr_mult != 1.0:  # the vision tower in groups of its own (a run with them cannot resume one without)
        ids = {id(p) for p in vision_params}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups] + [
            {**g, "params": [p for p in g["params"] if id(p) in ids], "lr_mult": cfg.vision_lr_mult} for g in groups]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    step = 0
    log_state = {"tokens": 0}
    if ck is not None:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        if a.reset_optimizer:
            print("optimizer state not restored (--reset-optimizer)")
        else:
            opt.load_state_dict(state["opt"])
        step = state["step"]
        log_state = state.get("log_state", log_state)
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        print(f"resumed from {ck} at step {step}")
    n_params = sum(p.numel() for p in model.parameters())
    (run / "run_config.json").write_text(json.dumps({**asdict(cfg), "params": n_params, "fp16_mb": n_params * 2 / 1e6}, indent=1))
    print(f"model: {n_params / 1e6:.2f} M parameters ({n_params * 2 / 1e6:.1f} MB fp16); {cfg.tokens_per_image} tokens per image; "
          f"stages {cfg.stage_bounds()}; device {device}")

    logf = open(run / "log.jsonl", "a")

    def log(rec):
        rec = {"step": step, "time": time.time(), **rec}
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        print(json.dumps(rec), flush=True)

    stop = min(cfg.total_steps, a.max_steps or cfg.total_steps)
    if not a.export_only:
        log_state["trained_on"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {a.threads} threads"
    t_win, s_win, window, window_ptr = time.time(), step, [], []
    workers = a.workers if a.workers is not None else (4 if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        StepData(cfg, enc), batch_size=None, sampler=range(step, stop) if not a.export_only else [], num_workers=workers,
        prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda",
    )
    for item_step, kind, batch in loader:
        assert item_step == step, (item_step, step)
        stage, k, n = stage_at(cfg, step)
        lr = lr_at(cfg, step, stage)
        for g in opt.param_groups:
            g["lr"] = lr * (g.get("lr_mult", 1.0) if stage != "vision" else 1.0)
        frozen = cfg.freeze_vision and stage != "vision"
        if vision_params[0].requires_grad == frozen:  # AdamW skips parameters without gradients
            for prm in vision_params:
                prm.requires_grad_(not frozen)
        batch = {key: (v.to(device, non_blocking=True) if torch.is_tensor(v) else [t.to(device) for t in v] if isinstance(v, list) else v)
                 for key, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
            if kind == "vision":
                logits = heads(image_features(model, batch["pv"]))
                loss = sum(F.cross_entropy(lg.float(), t, ignore_index=-100) for lg, t in zip(logits, batch["targets"]))
                ntok = batch["pv"].shape[0] * cfg.tokens_per_image
            else:
                loss = model(input_ids=batch["ids"], attention_mask=batch["mask"], pixel_values=batch["pv"], labels=batch["lab"]).loss
                if read_ptr is not None:
                    bind_loss = bind_ptr(batch["bind_rows"], batch["bind_targets"], batch["mask"])
                    read_loss = read_ptr(batch["read_rows"], batch["read_targets"], batch["mask"])
                    window_ptr.append((float(bind_loss.detach()), float(read_loss.detach())))
                    loss = loss + cfg.pointer_weight * (bind_loss + read_loss)
                ntok = int(batch["mask"].sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        log_state["tokens"] += ntok
        window.append((kind, float(loss.detach())))
        if step % 10 == 0 or step == stop:
            el = time.time() - t_win
            by = {}
            for kd, l in window:
                by.setdefault(kd, []).append(l)
            if window_ptr:
                by["bind"], by["read"] = [b for b, _ in window_ptr], [r for _, r in window_ptr]
            log({"stage": stage, "lr": lr, "loss": {kd: round(float(np.mean(v)), 4) for kd, v in by.items()},
                 "steps_per_s": round((step - s_win) / el, 3), "tokens": log_state["tokens"]})
            window, window_ptr, t_win, s_win = [], [], time.time(), step
        t_extra = time.time()  # evaluation and checkpoint time is left out of steps_per_s
        if step % cfg.eval_every == 0 and step != cfg.total_steps:  # the last step gets final_eval below
            ev = {"eval": evaluate(model, enc, cfg, device, cfg.eval_n)}
            if stage == "vision" or step <= cfg.steps_vision + cfg.eval_every:
                ev["vision_heads"] = vision_eval(model, heads, cfg, device, 4 * cfg.eval_n)
            log(ev)
        elif stage == "vision" and step % max(1, cfg.eval_every // 2) == 0:
            log({"vision_heads": vision_eval(model, heads, cfg, device, 4 * cfg.eval_n)})
        if step % cfg.ckpt_every == 0 or step == stop:
            save_ckpt(run, step, model, heads, opt, cfg, log_state)
        t_win += time.time() - t_extra

    if (step >= cfg.total_steps and not a.export_only) or a.final_eval:
        log({"final_eval": evaluate(model, enc, cfg, device, cfg.eval_n),
             "attention": attention_report(model, enc, cfg, device, max(4, cfg.eval_n // 2))})
    if a.export:
        out = export(model, tokenizer, cfg, a.export)
        n = check_export(out, cfg, enc)
        size = sum(f.stat().st_size for f in out.iterdir())
        # The folder's own README: the run's measurements.
        recs = [json.loads(l) for l in open(run / "log.jsonl")]
        evals = [r for r in recs if "eval" in r or "final_eval" in r]
        att = [r["attention"] for r in recs if "attention" in r]
        seconds = training_seconds(recs)
        (out / "TRAINING.json").write_text(json.dumps({"config": asdict(cfg), "step": step, "params": n, "training_seconds": seconds,
                                                       "evals": evals, "attention": att[-1] if att else None}, indent=1))
        (out / "README.md").write_text(model_readme(cfg, step, n, seconds, evals, att[-1] if att else None, a, log_state.get("trained_on", "?")))
        parity = write_parity(out, run, cfg, enc)
        log({"export": str(out), "bytes": size, "params": n, "parity_cases": str(parity)})
    logf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
