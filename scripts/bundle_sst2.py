"""Writes the SST-2 subset that ships inside the package (``lrp_kernels/data/sst2/``).

    python scripts/bundle_sst2.py GLUE_SST2_DIR [--train-examples 3000] [--seed 42]

GLUE_SST2_DIR holds SST-2 as GLUE distributes it (train.tsv, dev.tsv). The bundled ``train.tsv`` is the
seeded subset that ``lrp-kernels demo`` fine-tunes on — the rows ``TrainConfig(max_train_examples=3000,
seed=42)`` picks from the full training file, in that order, copied byte for byte — so the demo trains
on the same sentences whether it reads the bundled files or the full set. ``dev.tsv`` is copied whole.
The script checks that the bundled file reads back as exactly that subset.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from lrp_kernels.data import load_task

OUT = Path(__file__).resolve().parents[1] / "lrp_kernels" / "data" / "sst2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("glue_dir", type=Path)
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    full = load_task("sst2", args.glue_dir, "train")
    # the selection of lrp_kernels.training.load_splits: shuffle(seed).select(range(n)); the permutation
    # depends on the seed and the length only, so a row-number column shows which rows it picks
    picked = full.add_column("row", list(range(len(full)))).shuffle(seed=args.seed).select(range(args.train_examples))
    lines = (args.glue_dir / "train.tsv").read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    assert len(body) == len(full), "one line per row expected in train.tsv"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train.tsv").write_bytes(header + b"".join(body[i] for i in picked["row"]))
    shutil.copyfile(args.glue_dir / "dev.tsv", OUT / "dev.tsv")

    bundled = load_task("sst2", OUT, "train")
    assert bundled["text"] == picked["text"] and bundled["label"] == picked["label"], "the subset does not read back"
    for name in ("train.tsv", "dev.tsv"):
        data = (OUT / name).read_bytes()
        print(f"{OUT / name}: {len(data)} bytes, md5 {hashlib.md5(data).hexdigest()}")


if __name__ == "__main__":
    main()
