#!/usr/bin/env python3
"""transformers' Idefics3Processor on SmolVLM-256M-Instruct's own processor files, as a reference.

Purpose
-------
test/fixtures/hub-processors/SmolVLM-256M-Instruct/ holds the checkpoint's verbatim tokenizer
(gzipped), tokenizer and chat-template configs, preprocessor_config.json, processor_config.json
and config.json (provenance: test/fixtures/configs/hub/SOURCES.md). This writes, beside them,
images of screenshot-like sizes and `cases.json`: for each conversation, the prompt the chat
template renders and the input ids transformers' processor expands it to (tiles, row/column
tokens, global image) with the frames of each image. test/runtime/smolvlmHubProcessor.test.ts
checks the runtime's processor against it.

How to run (from the repository root)
-------------------------------------
    /tmp/h8venv/bin/python tools/model/record_smolvlm_hub.py

Deterministic; the outputs are committed and `npm test` never runs Python.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from PIL import Image
from transformers import AutoProcessor

HERE = Path(__file__).resolve().parents[2] / "test/fixtures/hub-processors/SmolVLM-256M-Instruct"
# (name, width, height): a laptop screenshot, a full-HD one, a tall document, a small banner, a tiny icon.
IMAGES = [("screenshot", 1280, 800), ("fullhd", 1920, 1080), ("document", 800, 2000), ("banner", 300, 120), ("icon", 40, 56)]


def image(width: int, height: int) -> Image.Image:
    # Two flat halves: the grid depends on the size alone; flat colours keep the PNG small.
    img = Image.new("RGB", (width, height), (230, 230, 235))
    img.paste((40, 90, 160), (0, 0, width // 2, height))
    return img


def user(*parts) -> dict:
    return {"role": "user", "content": list(parts)}


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    for name, w, h in IMAGES:
        image(w, h).save(HERE / "images" / f"{name}.png", optimize=True)
    text = lambda t: {"type": "text", "text": t}
    img = {"type": "image"}
    cases = [
        ("screenshot", [user(img, text("What does this dialog say?"))], ["screenshot"]),
        ("fullhd-text-first", [user(text("Describe the layout."), img)], ["fullhd"]),
        ("document", [user(img, text("Summarise the page."))], ["document"]),
        ("two-images", [user(img, img, text("Which one is wider?"))], ["banner", "icon"]),
        (
            "two-turns",
            [
                user(img, text("What is in the window?")),
                {"role": "assistant", "content": [text(" A settings dialog.")]},
                user(text("And the button label?")),
            ],
            ["screenshot"],
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for f in HERE.iterdir():
            if f.is_file() and f.name != "cases.json":
                shutil.copy(f, tmp)
        with gzip.open(HERE / "tokenizer.json.gz", "rb") as src, open(Path(tmp) / "tokenizer.json", "wb") as dst:
            dst.write(src.read())
        processor = AutoProcessor.from_pretrained(tmp)
        out = []
        for name, messages, files in cases:
            prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
            images = [Image.open(HERE / "images" / f"{f}.png") for f in files]
            enc = processor(text=prompt, images=[images], return_tensors="np")
            out.append(
                {
                    "name": name,
                    "messages": messages,
                    "images": files,
                    "prompt": prompt,
                    "input_ids": enc["input_ids"][0].tolist(),
                    # Frames (tiles + the global image) per image, each image processed alone.
                    "frames_per_image": [int(processor.image_processor([i], return_tensors="np")["pixel_values"].shape[1]) for i in images],
                }
            )
    meta = {"transformers": version("transformers"), "pillow": version("pillow"), "cases": out}
    (HERE / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    for c in out:
        print(c["name"], len(c["input_ids"]), c["frames_per_image"])


if __name__ == "__main__":
    main()
