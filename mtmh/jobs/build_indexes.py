"""Build the per-head ANN indexes of trained models (both heads in parallel, as Ray tasks).

python ray_jobs/build_indexes.py --run runs/ml-100k --model mtmh
python ray_jobs/build_indexes.py --run runs/ml-100k --model content --set index.family=ivf_pq

Writes RUN/indexes/<model>/<head>/{index.faiss, meta.json}. --model takes a trained variant
or `content` (the content encoder's embeddings); repeat it for several models.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from mtmh.index.build import build_indexes
from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory")
    parser.add_argument("--model", action="append", required=True, help="variant or content")
    args, cfg = parse_on_run(parser, argv)

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        built = {}
        for model in args.model:
            metas = build_indexes(args.run, model, cfg)
            built[model] = {
                h: {k: v for k, v in asdict(m).items() if k != "build_config"}
                for h, m in metas.items()
            }
        out.console.print_json(json.dumps(built, default=str))
        return 0

    return run_job("build_indexes", args.run, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
