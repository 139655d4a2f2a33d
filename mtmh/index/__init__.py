"""Per-head ANN indexes: exact inner product (the reference) and FAISS IVF (serving)."""
