"""Runs mtmh/jobs/train_preranker.py: `python ray_jobs/train_preranker.py --help`."""

import sys

from mtmh.jobs.train_preranker import main

if __name__ == "__main__":
    sys.exit(main())
