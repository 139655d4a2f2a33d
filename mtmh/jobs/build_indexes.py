"""Build the per-head ANN indexes of trained models (both heads in parallel, as Ray tasks).

python ray_jobs/build_indexes.py --run runs/ml-100k --model mtmh
python ray_jobs/build_indexes.py --run runs/ml-100k --model content --set index.family=ivf_pq

Writes RUN/indexes/<model>/<head>/{index.faiss, meta.json}. --model takes a trained variant
or `content` (the content encoder's embeddings); repeat it for several models.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from mtmh.cli import add_config_args, run_config_from_args, setup_logging
from mtmh.index.build import build_indexes
from mtmh.index.faiss_index import AnnIndexError
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    parser.add_argument("--model", action="append", required=True, help="variant or content")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    cfg = run_config_from_args(args, args.run)
    init_ray(cfg.ray)
    out = {}
    for model in args.model:
        try:
            metas = build_indexes(args.run, model, cfg)
        except (FileNotFoundError, AnnIndexError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        out[model] = {h: {k: v for k, v in asdict(m).items() if k != "build_config"}
                      for h, m in metas.items()}  # fmt: skip
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
