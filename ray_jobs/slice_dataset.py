"""Runs mtmh/jobs/slice_dataset.py: `python ray_jobs/slice_dataset.py --help`."""

import sys

from mtmh.jobs.slice_dataset import main

if __name__ == "__main__":
    sys.exit(main())
