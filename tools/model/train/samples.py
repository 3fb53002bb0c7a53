#!/usr/bin/env python3
"""Write the sample inputs of `npm run demo` (media/samples/) in the embedded model's training
distribution: three shapes with a digit, drawn by train_vlm.render at the held-out geometry, and a
settings file of `name = value` lines. Seeded; rerunning rewrites the same files."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_vlm as T  # noqa: E402

OUT = Path(__file__).resolve().parents[3] / "media" / "samples"
IMAGES = {
    "red-square.png": dict(colour="red", shape="square", digit=3),
    "blue-circle.png": dict(colour="blue", shape="circle", digit=7),
    "green-triangle.png": dict(colour="green", shape="triangle", digit=5),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in IMAGES.items():
        T.render(spec, 64, None, eval_like=True).resize((128, 128)).save(OUT / name, format="PNG")
    rng = np.random.default_rng(20261125)
    names = [T.LOOKUP_KEYS[i] for i in rng.choice(len(T.LOOKUP_KEYS), size=40, replace=False)]
    lines = [f"{n} = {int(rng.integers(10000))}" for n in names]
    (OUT / "service.conf").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
