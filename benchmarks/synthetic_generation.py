"""How long `generate_synthetic_market` takes, per preset and number of worker processes.

    python benchmarks/synthetic_generation.py                      # small and market, 1 and 2 workers
    python benchmarks/synthetic_generation.py --presets small --contact-sheet sheet.png

Each run writes into a fresh temporary folder (deleted afterwards) and prints one table row. The
machine's load average is printed too: on a shared machine the times are upper bounds.
`--contact-sheet` also draws a few identities (look-alike groups first) across the six cameras,
to check by eye that identities differ and that cameras differ.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from tripletlib import files
from tripletlib.data import load_market1501
from tripletlib.synthetic import generate_synthetic_market, plan_synthetic_market


def time_generation(preset: str, workers: int, seed: int) -> tuple[int, float]:
    """(images written, seconds) for one generation into a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = generate_synthetic_market(
            Path(folder) / "data", preset=preset, seed=seed, workers=workers, progress=False
        )
        seconds = time.perf_counter() - start
    return summary.train_images + summary.gallery_images + summary.query_images, seconds


def contact_sheet(root: Path, seed: int, train_ids: int, rows: int = 8) -> Figure:
    """Two images per camera for `rows` train identities, look-alike groups first."""
    metadata = load_market1501(root, progress=False)
    plan, looks = plan_synthetic_market(train_ids=train_ids, seed=seed)
    train = plan[plan["split"] == "train"].drop_duplicates("person_id")
    uniform = [(looks[i].upper, looks[i].lower, looks[i].pattern) for i in train["look_index"]]
    group_size = {key: uniform.count(key) for key in uniform}
    order = np.argsort([-group_size[key] for key in uniform], kind="stable")
    people = train["person_id"].to_numpy()[order][:rows]
    figure = Figure(figsize=(12, 2.1 * len(people)))
    axes = figure.subplots(len(people), 12, squeeze=False)
    for row, person in enumerate(people):
        for column in range(12):
            camera, index = column // 2 + 1, column % 2
            images = metadata[(metadata["person_id"] == person) & (metadata["camera_id"] == camera)]
            axis = axes[row, column]
            axis.axis("off")
            if index < len(images):
                axis.imshow(Image.open(images["file_path"].iloc[index]))
                axis.set_title(f"id {person} c{camera}", fontsize=7)
    figure.tight_layout()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "market"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contact-sheet", type=Path, help="PNG to write (small preset)")
    args = parser.parse_args()

    print(f"cpu cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'preset':>8} {'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9}")
    for preset in args.presets:
        for workers in args.workers:
            images, seconds = time_generation(preset, workers, args.seed)
            print(f"{preset:>8} {workers:>7} {images:>7} {seconds:>8.1f} {images / seconds:>9.0f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.contact_sheet:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder) / "data"
            generate_synthetic_market(root, seed=args.seed, train_ids=40, progress=False)
            figure = contact_sheet(root, args.seed, train_ids=40)
            with files.atomic_path(args.contact_sheet) as temporary:
                figure.savefig(temporary, dpi=80, format=Path(args.contact_sheet).suffix[1:] or "png")
        print(f"contact sheet written to {args.contact_sheet}")


if __name__ == "__main__":
    main()
