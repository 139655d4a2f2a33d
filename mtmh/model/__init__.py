"""The MTMH item tower and its variants (spec section 4)."""
