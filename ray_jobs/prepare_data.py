"""Runs mtmh/jobs/prepare_data.py: `python ray_jobs/prepare_data.py --help`."""

import sys

from mtmh.jobs.prepare_data import main

if __name__ == "__main__":
    sys.exit(main())
