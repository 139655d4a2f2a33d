"""The content encoder: MTMH's frozen multimodal teacher (spec section 5)."""
