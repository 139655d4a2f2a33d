"""Runs mtmh/jobs/build_indexes.py: `python ray_jobs/build_indexes.py --help`."""

import sys

from mtmh.jobs.build_indexes import main

if __name__ == "__main__":
    sys.exit(main())
