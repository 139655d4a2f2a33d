"""The serving path of spec section 6: per-head ANN search, preranking of each head's
candidates separately, the quota merge, and pooling across a user's triggers.

The Serve app (serve_app/) calls these one request at a time, its fused deployment and the
in-process reference (mtmh/serving/) the whole chain at once, and the evaluation
(mtmh/eval/) over thousands of users; all three return the same candidates for the same
inputs because they run the same functions.

- `heads`: one head's item vectors and ANN index (`HeadIndex`), or a classic peer's
  neighbour table in its place (`NeighborHead`).
- `ranking`: cutting a head's K_ann candidates to K, by preranker score or by similarity.
- `merge`: the alpha quota merge of the two heads, and pooling over triggers.
- `retriever`: the chain for one user, in process.
- `partitioned`, `cluster_index`, `quotas`: a head searched cluster by cluster (divide and
  conquer), its per-cluster indexes, and how a trigger's places are shared among clusters.
- `served`: a model's heads the way it serves (globally, or partitioned).

Example:
    heads = load_heads(run_dir, "mtmh", ("engagement", "relevance"), use_gpu=False)
    ret = Retriever(heads, k_ann=168, keep=30, preranker=load_preranker(run_dir, "mtmh"),
                    relevance_k_ann=60)
    kept = ret.preranked(triggers, seen)                            # {head: [T] ordered lists}
    per_trigger = ret.merge(kept, alpha=50, order="preranker")      # [T] lists of Candidate
    ranked = pool(per_trigger, top_k=500, how="sum")                # [(item, score)]
"""
