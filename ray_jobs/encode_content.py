"""Runs mtmh/jobs/encode_content.py: `python ray_jobs/encode_content.py --help`."""

import sys

from mtmh.jobs.encode_content import main

if __name__ == "__main__":
    sys.exit(main())
