"""The multi-task user-to-item preranker that ranks each head's ANN candidates (spec 6)."""
