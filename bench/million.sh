#!/usr/bin/env bash
# A million-item catalog end to end (issue 15): the synthetic generator at 1M items through
# prepare, encode, train (a short budget), index, preranker, and then serve under load.
#
#   bench/million.sh > runs/synthetic-1m.log 2>&1     # writes runs/synthetic-1m
#   RUN=/shared/runs/synthetic-1m bench/million.sh
#
# Each stage is the platform's own Ray job, run as a user would; the wall time of each is
# printed. A stage whose output is already in RUN is skipped, so an interrupted run resumes
# (delete RUN to start over). Training is capped (train.max_steps, preranker.epochs):
# the point is the catalog's size at serving, not model quality. The indexes are IVF-PQ with exact re-ranking,
# autotuned to recall 0.95 at K_ann (the family the 1M index bench favours, docs/benchmarks.md).
# The last step is bench/serve_load.py on the run, fused and graph, with Serve's fast path:
# p50/p99 at concurrency 1, 4 and 16 and the memory of every replica.
set -euo pipefail
RUN=${RUN:-runs/synthetic-1m}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SETS=(
  --set data.synthetic.num_items=1000000 --set data.synthetic.num_users=200000
  --set data.synthetic.num_interactions=4000000
  --set content.train.max_items=20000 --set content.train.epochs=20
  --set train.epochs=1 --set train.max_steps=600
  --set preranker.epochs=1
  --set index.family=ivf_pq --set index.target_recall=0.95
  --set eval.max_users=2000
)
stage() {  # name, output that marks it done, command...
  local name=$1 done=$2; shift 2
  if [ -e "$done" ]; then echo "== $name: done before ($done)"; return; fi
  local t0=$SECONDS
  "$@"
  echo "== $name: $((SECONDS - t0)) s"
}
stage prepare "$RUN/data/config.yaml" \
  "$PY" ray_jobs/prepare_data.py --dataset synthetic --out "$RUN" "${SETS[@]}"
# The serving side reads the run's config as the pipeline writes it.
cp "$RUN/data/config.yaml" "$RUN/pipeline.yaml"
stage encode "$RUN/content/item_embeddings.parquet" \
  "$PY" ray_jobs/encode_content.py --run "$RUN"
stage train "$RUN/models/mtmh/summary.json" "$PY" ray_jobs/train.py --run "$RUN" --variant mtmh
stage index "$RUN/indexes/mtmh/relevance/meta.json" \
  "$PY" ray_jobs/build_indexes.py --run "$RUN" --model mtmh
stage preranker "$RUN/preranker/mtmh/model.pt" "$PY" ray_jobs/train_preranker.py --run "$RUN"
du -sh "$RUN"/indexes/mtmh/* "$RUN"/models/mtmh/embeddings
stage serve "$RUN/serve_load.json" "$PY" bench/serve_load.py --run "$RUN" --settings fast --requests 300 \
  --out "$RUN/serve_load.json"
