"""Runs mtmh/jobs/cluster_catalog.py: `python ray_jobs/cluster_catalog.py --help`."""

import sys

from mtmh.jobs.cluster_catalog import main

if __name__ == "__main__":
    sys.exit(main())
