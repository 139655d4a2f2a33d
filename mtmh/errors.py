"""The project's own errors: what a user can act on, with a message that says what and where.

Every job script turns one into one line on stderr and exit status `exit_code`, and keeps the
traceback in its log file (mtmh/job_output.py). Anything else is a bug: it gets the same one
line, prefixed "unexpected", and exit status 1.
"""

from __future__ import annotations


class MtmhError(Exception):
    exit_code = 2  # bad input, config or missing artifacts (the usual CLI convention)


class ArtifactError(MtmhError, ValueError):
    """A run's files do not hold what a stage needs (ids that do not cover the catalog, no
    users to evaluate, no rows to learn from): redo the stage that wrote them."""


class NoDeviceError(MtmhError, RuntimeError):
    """A GPU path was asked for (a `use_gpu` setting) on a worker without a CUDA device."""
