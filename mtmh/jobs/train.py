"""Train one model variant (MTMH, an ablation or a baseline) on a prepared and encoded run.

python ray_jobs/train.py --run runs/ml-100k --variant mtmh
ray job submit -- python ray_jobs/train.py --run /shared/runs/ml-1m --variant mtmh \
    --set train.num_workers=4 --set train.use_gpu=true

Reads RUN/data/pairs (prepare_data.py) and RUN/content (encode_content.py; variants that
distill or read content need it). Writes RUN/models/<variant>/: model.pt, config.yaml,
metrics.jsonl, loss_curves.png and embeddings/<head>.parquet. The run's own config
(RUN/data/config.yaml) is the base; --config replaces it and --set overrides either.
"""

from __future__ import annotations

import json
import sys

from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.model.training import train_variant
from mtmh.model.variants import VARIANTS
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="default: model.variant")
    known, _ = parser.parse_known_args(argv)
    extra = [f"model.variant={known.variant}"] if known.variant else []
    args, cfg = parse_on_run(parser, argv, extra)

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        out.console.print_json(json.dumps(train_variant(cfg, args.run)))
        return 0

    # ValueError: data the training cannot use (no pairs, no content where it is distilled)
    return run_job(f"train-{cfg.model.variant}", args.run, args.verbose, body, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
