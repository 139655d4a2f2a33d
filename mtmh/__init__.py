"""mtmh: item-to-item retrieval with the multi-task multi-head (MTMH) model, on Ray."""

__version__ = "0.1.0"
