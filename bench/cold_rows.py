"""New items' id rows: as training left them, or zero (the content and side-feature pathway
alone), side by side on the test users.

An item nobody engaged with in T1 is in no training pair, but the logQ sampler (smoothed by
one) still draws it as a random negative, so its id row is trained only to be far from every
trigger. Issue 28 asks that a new item's row "start from what the content pathway gives, not
noise". This bench measures what that would change before any training code does: for each
model it embeds the catalog twice from the saved weights, once as trained and once with the
new items' id rows set to zero, and runs the evaluation (`accumulate`: the same users,
preranker and ANN order as the report) on both. Only the new items' vectors differ.

    .venv/bin/python bench/cold_rows.py --run runs/ml-100k
    .venv/bin/python bench/cold_rows.py --run runs/synthetic-dat-k --models mtmh itemcf
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from mtmh.config import load_config
from mtmh.embeddings import EmbeddingSource
from mtmh.eval.diversity import EvalCatalog
from mtmh.eval.protocol import REPORT_MODELS, accumulate, sample_users, source_retriever
from mtmh.index.faiss_index import build_exact, search
from mtmh.model.train_loop import build_task, embed_all, model_dir
from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.retriever import Retriever


def warm_rows(
    run_dir: Path, new: np.ndarray, how: str, k: int = 10
) -> Callable[[torch.Tensor], None]:
    """What a new item's id row becomes: "zero"; "neighbours": the mean id row of its `k`
    nearest trained items in the content encoder's space; "nearest": the row of the nearest
    one (a copy keeps a trained row's scale, which a mean of several shrinks)."""
    rows = torch.as_tensor(np.flatnonzero(new))
    if how == "zero":

        def fill(table: torch.Tensor) -> None:
            table[rows] = 0.0

        return fill
    _, content = EmbeddingSource.content(run_dir).load("content")
    old = np.flatnonzero(~new)
    _, nearest = search(build_exact(content[old], old), content[new], 1 if how == "nearest" else k)
    source = torch.as_tensor(nearest)

    def copy(table: torch.Tensor) -> None:
        table[rows] = table[source].mean(dim=1)

    return copy


def warm_heads(run_dir: Path, model: str, new: np.ndarray, how: str) -> dict[str, np.ndarray]:
    """{head: [N, D]} the model's embeddings with the new items' id rows set by `how`."""
    folder = model_dir(run_dir, model)
    cfg = load_config(folder / "config.yaml")
    task = build_task(cfg, run_dir)
    task.tower.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
    if task.tower.sparse.hash_buckets is not None:
        raise SystemExit(f"{model}: hashed ids share rows; a new item has no row of its own")
    with torch.no_grad():
        warm_rows(run_dir, new, how)(task.tower.sparse.id_table.weight)
    return embed_all(task.tower)


def exact(head: HeadIndex, vectors: np.ndarray) -> HeadIndex:
    return HeadIndex(
        head.model, head.head, head.version, vectors, build_exact(vectors, np.arange(len(vectors)))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["mtmh", "itemcf"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.run / "pipeline.yaml")
    users = sample_users(args.run, cfg.eval)
    catalog = EvalCatalog.load(args.run)
    new = catalog.new  # the report's own definition: no T1 interactions
    assert new is not None
    print(f"{args.run}: {int(new.sum())} new items of {len(new)}, {len(users)} test users")
    print(f"{'row':>10} {'order':>9} {'rows':>10} {'R@500':>7} {'new R@500':>10} {'new share':>10}")
    for model in args.models:
        specs = [s for s in REPORT_MODELS if s.source == model and not s.partitioned]
        base, heads = source_retriever(args.run, specs, cfg)
        # Both searched exactly, so the only difference is the new items' vectors.
        retrievers = {
            label: Retriever(
                {name: exact(h, by_head[name]) for name, h in heads.items()},
                base.k_ann,
                base.keep,
                base.preranker,
                base.relevance_k_ann,
            )
            for label, by_head in (
                ("trained", {name: h.vectors for name, h in heads.items()}),
                ("zero", warm_heads(args.run, model, new, "zero")),
                ("neighbours", warm_heads(args.run, model, new, "neighbours")),
                ("nearest", warm_heads(args.run, model, new, "nearest")),
            )
        }
        alphas = {s.name: [cfg.eval.alpha] for s in specs}
        for label, r in retrievers.items():
            acc = accumulate(r, specs, alphas, users, cfg.eval, catalog)
            for (order, name, _), metrics in sorted(acc.items()):
                m = metrics.result()
                print(
                    f"{name:>10} {order:>9} {label:>10} {100 * m['recall@500']:7.2f} "
                    f"{100 * m['cold_recall@500']:6.2f} ± {100 * m['cold_recall@500_se']:4.2f} "
                    f"{100 * m['cold_share']:9.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
