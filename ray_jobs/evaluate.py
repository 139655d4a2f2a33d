"""Runs mtmh/jobs/evaluate.py: `python ray_jobs/evaluate.py --help`."""

import sys

from mtmh.jobs.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
