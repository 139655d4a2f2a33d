"""Runs mtmh/jobs/pipeline.py: `python ray_jobs/pipeline.py --help`."""

import sys

from mtmh.jobs.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
