"""Prepare a local Market-1501 copy: check it, save its metadata table, build the image caches.

    python data_scripts/prepare_market1501.py /data/Market-1501-v15.09.15 --out data/market1501

Reads the folder with `tripletlib.data.load_market1501` (every image decoded once with
``--check-images``), writes ``OUT/metadata.csv`` (Fig. 3.4), prints the identities and images per
split and the identities per camera (Fig. 3.3), then decodes each split once into
``OUT/cache/images_<H>x<W>_<key>.npy`` (default 256x128, Section 3.1.2), the cache that
`tripletlib.images.load_image_array` reopens memory-mapped. The dataset itself is not downloaded
here: get it from the authors' page and unpack it first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tripletlib.data import (
    DEFAULT_SPLITS,
    MarketFormatError,
    identities_per_camera,
    load_market1501,
    save_metadata,
    summarize,
)
from tripletlib.images import ImageReadError, load_image_array


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the unpacked Market-1501 folder")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/market1501"),
        help="where metadata.csv and cache/ go (default: data/market1501)",
    )
    parser.add_argument("--height", type=int, default=256, help="cached image height")
    parser.add_argument("--width", type=int, default=128, help="cached image width")
    parser.add_argument(
        "--splits",
        nargs="+",
        default=list(DEFAULT_SPLITS),
        help="splits to read (train gallery query, optionally gt_bbox)",
    )
    parser.add_argument("--check-images", action="store_true", help="decode every image first")
    parser.add_argument("--no-cache", action="store_true", help="skip building the image cache")
    args = parser.parse_args(argv)

    try:
        metadata = load_market1501(
            args.root, splits=args.splits, with_image_size=True, check_images=args.check_images
        )
    except (MarketFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_metadata(metadata, args.out / "metadata.csv")
    print(f"metadata of {len(metadata)} images written to {args.out / 'metadata.csv'}\n")
    print(summarize(metadata).to_string(), "\n")
    print("identities per camera:")
    print(identities_per_camera(metadata).to_string(), "\n")
    sizes = metadata.groupby(["image_width", "image_height"]).size()
    print(
        "image sizes (width x height: images):",
        ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.items()),
    )
    if args.no_cache:
        return 0
    for split in args.splits:
        part = metadata[metadata["split"] == split]
        try:
            images = load_image_array(part, args.height, args.width, cache_dir=args.out / "cache")
        except ImageReadError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{split}: {images.shape} cached in {Path(images.filename).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
