"""The w_r sweep (mtmh/jobs/sweep_wr.py) for `python` and `ray job submit`; see --help."""

import sys

from mtmh.jobs.sweep_wr import main

if __name__ == "__main__":
    sys.exit(main())
