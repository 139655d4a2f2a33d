"""What the online service serves from a run directory, named by one version.

A `ServingRun` is everything a request needs to know about the model it is answered by: the
run directory, the model's two heads, the catalog size and the evaluation's retrieval knobs
(K_ann, K, exclude-seen), so the Serve app answers with the same candidates as the in-process
evaluation. Its `version` hashes the embedding files (which the indexes are checked against)
and the preranker's weights: a retrained model, index set or preranker is a new version.
A run with clusters (RUN/clusters) also serves divide-and-conquer requests
(mtmh/serving/partition.py); its version then holds the clusters' digest too.

Deployments that hold per-version state (ANN heads, preranker) load it from a `model_id`,
"<version>@<run dir>", and refuse a run directory whose artifacts have changed since the id
was made, so a request never mixes two versions (see serve_app/).

Example:
    run = ServingRun.open(Path("runs/ml-100k"))
    run.version           # "mtmh-3f2a9c0d1b7e.pr-81c0ffee"
    same = ServingRun.from_model_id(run.model_id)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtmh.clusters.artifact import has_clusters, load_clusters
from mtmh.clusters.query_table import clusters_digest
from mtmh.config import load_config
from mtmh.embeddings import EmbeddingSource
from mtmh.errors import MtmhError
from mtmh.index.artifact import index_dir, read_meta
from mtmh.preranker.ranker import (
    MODEL_FILE,
    Preranker,
    load_preranker,
    preranker_digest,
    preranker_dir,
)
from mtmh.preranker.train import catalog_size
from mtmh.retrieval.heads import HeadIndex, StoredVectorsHead, cover_k_ann, load_heads
from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from mtmh.retrieval.ranking import resolved_ranking
from mtmh.serving.partition import ServedPartition
from mtmh.versions import serving_dir, version_dir

SERVED_HEADS = (ENGAGEMENT, RELEVANCE)


class ServingArtifactError(MtmhError, RuntimeError):
    """A run directory is missing something the service needs, or changed under a version."""


@dataclass(frozen=True)
class ServingRun:
    run_dir: Path  # absolute
    model: str  # the trained variant served, "mtmh"
    version: str
    num_items: int
    k_ann: int  # ANN candidates per head and trigger
    keep: int  # K: candidates kept per head and trigger (the merge's K in /retrieve)
    relevance_k_ann: int  # the relevance head's nearest candidates its preranker chooses from
    top_k: int  # candidates per /retrieve response by default
    alpha: float  # default engagement quota, percent
    exclude_seen: bool  # a user's history is never recommended back
    ranking: str  # "preranker" or "ann": how each head's candidates are cut to K (eval/)
    num_clusters: int = 0  # the run's clusters (0: none; divide-and-conquer requests refused)
    visit: int = 8  # clusters per trigger when a divide-and-conquer request names none
    temperature: float = 0.1  # the affinity strategy's softmax temperature

    @classmethod
    def open(
        cls, run_dir: str | Path, model: str = "mtmh", number: int | None = None
    ) -> ServingRun:
        """The run `run_dir` at version `number` (mtmh/versions.py; 0: the folder itself),
        by default the version it serves (RUN/serving.json)."""
        root = Path(run_dir).resolve()
        run_dir = serving_dir(root) if number is None else version_dir(root, number)
        config = run_dir / "pipeline.yaml"
        if not config.is_file():
            raise ServingArtifactError(f"{config} not found: is {run_dir} a pipeline run?")
        cfg = load_config(config)
        try:
            source = EmbeddingSource.named(run_dir, model)
        except FileNotFoundError as err:
            raise ServingArtifactError(str(err)) from err
        missing = [h for h in SERVED_HEADS if h not in source.heads]
        if missing:
            raise ServingArtifactError(f"{model} in {run_dir} has no {missing} head(s)")
        for head in SERVED_HEADS:
            folder = index_dir(run_dir, model, head)
            if not (folder / "meta.json").is_file():
                raise ServingArtifactError(f"{folder}: no index; run ray_jobs/build_indexes.py")
            if read_meta(folder).model_version != source.version:
                raise ServingArtifactError(f"{folder} was built for another {model} version")
        weights = preranker_dir(run_dir, model) / MODEL_FILE
        if not weights.is_file():
            raise ServingArtifactError(f"{weights} not found: run ray_jobs/train_preranker.py")
        num_items = catalog_size(run_dir)
        ec = cfg.eval
        version = f"{source.version}.pr-{preranker_digest(run_dir, model)}"
        num_clusters = 0
        if has_clusters(run_dir):
            clustering, _ = load_clusters(run_dir, num_items)
            num_clusters = clustering.num_clusters
            version += f".cl-{clusters_digest(clustering.assignments)[:8]}"
        return cls(
            run_dir=run_dir,
            model=model,
            version=version,
            num_items=num_items,
            k_ann=ec.k_ann_for(num_items),
            keep=ec.keep_per_head,
            relevance_k_ann=ec.relevance_k_ann_for(num_items),
            top_k=ec.top_k,
            alpha=ec.alpha,
            exclude_seen=ec.exclude_seen,
            ranking=resolved_ranking(cfg, run_dir),
            num_clusters=num_clusters,
            visit=min(cfg.clusters.visit, num_clusters) if num_clusters else cfg.clusters.visit,
            temperature=cfg.clusters.temperature,
        )

    @property
    def model_id(self) -> str:
        """What a request carries to the per-version deployments (Serve's multiplexed id)."""
        return f"{self.version}@{self.run_dir}"

    @classmethod
    def from_model_id(cls, model_id: str) -> ServingRun:
        version, sep, run_dir = model_id.partition("@")
        if not sep:
            raise ServingArtifactError(f"malformed model id {model_id!r}")
        # "<model>-<embedding hash>.pr-<preranker hash>[.cl-<clusters hash>]"; model names
        # may hold "-".
        model = version.rsplit(".pr-", 1)[0].rsplit("-", 1)[0]
        run = cls.open(run_dir, model, number=0)  # that folder, whatever it serves now
        if run.version != version:
            raise ServingArtifactError(
                f"{run_dir} now holds version {run.version}, not {version}: artifacts were "
                "replaced in place; deploy new runs to new directories"
            )
        return run

    def load_head(self, head: str, use_gpu: bool = False) -> HeadIndex:
        """One head's version-checked index, with nprobe covering K_ann exactly as the
        evaluation's `Retriever` sets it. On the CPU the head reads its queries back from the
        index rather than keeping a second copy of the vectors (`StoredVectorsHead`)."""
        (index,) = load_heads(self.run_dir, self.model, (head,), use_gpu=use_gpu).values()
        cover_k_ann(index.index, self.k_ann, self.num_items)
        return index if use_gpu else StoredVectorsHead.of(index)

    def load_preranker(self) -> Preranker:
        return load_preranker(self.run_dir, self.model)

    def load_partition(self, head: str) -> ServedPartition | None:
        """One head split by the run's clusters, for divide-and-conquer requests (None when
        the run has none). Exact per-cluster search, on the CPU."""
        if not self.num_clusters:
            return None
        (index,) = load_heads(self.run_dir, self.model, (head,)).values()
        clustering, _ = load_clusters(self.run_dir, self.num_items)
        return ServedPartition(index, clustering.assignments, self.temperature)

    def cluster_of_items(self) -> list[int] | None:
        """Every item's cluster (the explore page colours candidates by it), or None."""
        if not self.num_clusters:
            return None
        clustering, _ = load_clusters(self.run_dir, self.num_items)
        return [int(c) for c in clustering.assignments]
