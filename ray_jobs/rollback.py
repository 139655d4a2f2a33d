"""Runs mtmh/jobs/rollback.py: `python ray_jobs/rollback.py --help`."""

import sys

from mtmh.jobs.rollback import main

if __name__ == "__main__":
    sys.exit(main())
