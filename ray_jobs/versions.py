"""Runs mtmh/jobs/versions.py: `python ray_jobs/versions.py --help`."""

import sys

from mtmh.jobs.versions import main

if __name__ == "__main__":
    sys.exit(main())
