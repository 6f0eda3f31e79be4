"""Annoy's trade-off (Section 3.3.2): recall@10 against exact search and query time per setting.

For each size (the `ci` and `cpu` books' query and gallery counts, read from their profiles'
synthetic datasets, and Market-1501's 3,368 x 15,913) and each spread of the clustered unit
vectors (`retrieval.clustered_unit_vectors`, 128-d: 0.3 separates the people, 1.2 lets them
overlap), runs `retrieval.annoy_tradeoff` over every ``n_trees`` x ``search_k`` of the grid and
prints one Markdown table row per setting; ``--csv`` also writes the rows (notebook 06 plots them).

    python benchmarks/annoy_tradeoff.py --csv docs/annoy_tradeoff.csv   # about 9 min on 2 shared cores

The recall is a function of the seed; the times are one run on a machine that may be shared.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from tripletlib import config, files, synthetic
from tripletlib.retrieval import annoy_tradeoff, clustered_unit_vectors

MARKET = ("market", 3368, 15913, 751)  # Market-1501's queries, gallery (no junk), identities
COLUMNS = ("size", "queries", "gallery", "spread", "n_trees", "search_k", "nodes", "recall",
           "build_seconds", "query_ms", "exact_ms")  # fmt: skip


def book_size(profile_name: str) -> tuple[str, int, int, int]:
    """(name, queries, gallery images, test identities) of a profile's synthetic dataset."""
    profile = config.PROFILES[profile_name]
    plan, _ = synthetic.plan_synthetic_market(
        train_ids=profile.synthetic_train_ids,
        test_ids=profile.synthetic_test_ids,
        seed=profile.synthetic_seed,
        preset=profile.synthetic_preset,
    )
    counts = plan["split"].value_counts()
    return profile_name, int(counts["query"]), int(counts["gallery"]), profile.synthetic_test_ids


def integers(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ci,cpu,market",
                        help="comma-separated: book profiles (their datasets' counts) or market")
    parser.add_argument("--spreads", default="0.3,1.2", help="comma-separated cluster spreads")
    parser.add_argument("--n-trees", default="10,50,100", help="comma-separated")
    parser.add_argument("--search-k", default="-1,2000,5000,10000,20000,50000",
                        help="comma-separated; -1 = n_trees * k (Annoy's default)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    arguments = parser.parse_args()  # fmt: skip
    settings = [
        (trees, nodes)
        for trees in integers(arguments.n_trees)
        for nodes in integers(arguments.search_k)
    ]
    print(
        f"| size | queries x gallery | spread | n_trees | search_k | recall@{arguments.k} | "
        "build s | Annoy ms/query | exact ms/query |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for name in arguments.sizes.split(","):
        size = MARKET if name == "market" else book_size(name)
        _, num_queries, num_gallery, clusters = size
        for spread in (float(value) for value in arguments.spreads.split(",")):
            queries, gallery = clustered_unit_vectors(
                num_queries, num_gallery, arguments.dimension,
                clusters=clusters, spread=spread, seed=arguments.seed,
            )  # fmt: skip
            for row in annoy_tradeoff(queries, gallery, settings, arguments.k, seed=arguments.seed):
                row = {"size": name, "queries": num_queries, "gallery": num_gallery,
                       "spread": spread, **row}  # fmt: skip
                rows.append(row)
                print(
                    f"| {name} | {num_queries} x {num_gallery} | {spread:g} | {row['n_trees']} | "
                    f"{row['search_k']} | {row['recall']:.3f} | {row['build_seconds']:.2f} | "
                    f"{row['query_ms']:.3f} | {row['exact_ms']:.3f} |",
                    flush=True,
                )
    if arguments.csv is not None:
        stream = io.StringIO(newline="")
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {key: round(value, 4) if isinstance(value, float) else value
                 for key, value in row.items()}
            )  # fmt: skip
        files.write_text_atomic(arguments.csv, stream.getvalue())


if __name__ == "__main__":
    main()
