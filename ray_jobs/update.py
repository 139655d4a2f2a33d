"""Runs mtmh/jobs/update.py: `python ray_jobs/update.py --help`."""

import sys

from mtmh.jobs.update import main

if __name__ == "__main__":
    sys.exit(main())
