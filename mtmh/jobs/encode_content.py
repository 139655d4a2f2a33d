"""Train (or load) the content encoder for a run and embed its whole catalog with Ray Data.

python ray_jobs/encode_content.py --run runs/ml-100k
ray job submit -- python ray_jobs/encode_content.py --run /shared/runs/ml-1m \
    --set content.use_gpu=true

Reads RUN/data (from prepare_data.py) and writes RUN/content/. The run's own config
(RUN/data/config.yaml) is the base; --config replaces it and --set overrides either. After
embedding, it prints the topic match of each item's top-10 content neighbours against random
neighbours (a diagnostic that reads the evaluation labels; it feeds nothing back).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table

from mtmh.content.encode import encode_content
from mtmh.eval.content_quality import content_topic_match
from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory (after prepare)")
    parser.add_argument("--retrain", action="store_true", help="train even if an encoder exists")
    parser.add_argument("--k", type=int, default=10, help="neighbours for the topic-match check")
    args, cfg = parse_on_run(parser, argv)

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        stats = encode_content(cfg, args.run, retrain=args.retrain)
        quality = content_topic_match(args.run, k=args.k)
        (args.run / "content" / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
        out.console.print(_stats_table(stats, quality))
        out.console.print_json(json.dumps({"stats": stats, "quality": quality}, default=str))
        return 0

    return run_job("encode", args.run, args.verbose, body)


def _stats_table(stats: dict[str, Any], quality: dict[str, Any]) -> Table:
    table = Table(title=f"{stats['dataset']}: content embeddings ({stats['encoder']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("items", "dim", "no_text", "with_image", "no_content"):
        table.add_row(key, f"{stats.get(key, 0):,}")
    for key, value in stats.items():
        if key.startswith("image_"):
            table.add_row(f"image error: {key.removeprefix('image_')}", f"{value:,}")
    table.add_row("train / embed seconds", f"{stats['train_seconds']} / {stats['embed_seconds']}")
    table.add_row("items per second (embed)", f"{stats['items_per_second']}")
    k = quality["k"]
    for level in ("l1", "l2"):
        table.add_row(
            f"{level.upper()} match of top-{k} neighbours (random, lift)",
            f"{quality[f'{level}_match']:.3f} ({quality[f'{level}_random']:.3f}, "
            f"{quality[f'{level}_lift']:.2f}x)",
        )
    return table


if __name__ == "__main__":
    sys.exit(main())
