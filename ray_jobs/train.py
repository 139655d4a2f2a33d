"""Runs mtmh/jobs/train.py: `python ray_jobs/train.py --help`."""

import sys

from mtmh.jobs.train import main

if __name__ == "__main__":
    sys.exit(main())
