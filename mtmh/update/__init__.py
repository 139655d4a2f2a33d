"""The update loop: new versions of a run from slices of new logs (mtmh/update/make_version.py)."""
