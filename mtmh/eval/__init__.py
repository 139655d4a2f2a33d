"""Evaluation: the paper's protocol, metrics, reports and plots (spec section 7)."""
