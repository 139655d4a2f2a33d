"""A two-level topic tree of real English words for synthetic item texts.

Real words (not random tokens) so that a pre-trained text encoder sees the same semantics a
human does: "sourdough crumb proofing" lands near "croissant butter pastry" (same L1, other L2)
and far from "offside penalty striker". Trees larger than this one reuse these vocabularies
with a numbered suffix on the topic name (see `topic_tree`). The words themselves are package
data: vocabulary.yaml beside this file.
"""

from __future__ import annotations

from importlib.resources import files

import yaml


def _load() -> tuple[dict[str, tuple[list[str], dict[str, list[str]]]], list[str]]:
    words = yaml.safe_load(files("mtmh.data.sources").joinpath("vocabulary.yaml").read_text())
    tree = {l1: (t["shared"], dict(t["l2"])) for l1, t in words["topics"].items()}
    return tree, list(words["filler"])


# L1 topic -> (words shared by the whole L1 topic, {L2 topic -> its own words}); and words
# any item may carry (noise shared across topics, as real titles have).
TOPIC_TREE, FILLER_WORDS = _load()


def topic_tree(
    num_l1: int, l2_per_l1: int
) -> list[tuple[str, list[str], list[tuple[str, list[str]]]]]:
    """The first `num_l1` L1 topics, each with `l2_per_l1` L2 topics and their vocabularies.

    Beyond the built-in 12 x 6, topics repeat the built-in vocabularies under a numbered name
    (e.g. "cooking-2/baking-2"), which keeps labels unique; texts of such twins are then only
    separable through co-engagement, a harder case that larger synthetic runs can opt into.
    """
    base = list(TOPIC_TREE.items())
    tree = []
    for i in range(num_l1):
        l1_name, (l1_words, l2s) = base[i % len(base)]
        l1_suffix = "" if i < len(base) else f"-{i // len(base) + 1}"
        l2_items = list(l2s.items())
        children = []
        for j in range(l2_per_l1):
            l2_name, l2_words = l2_items[j % len(l2_items)]
            l2_suffix = l1_suffix if j < len(l2_items) else f"{l1_suffix}-v{j // len(l2_items) + 1}"
            children.append((f"{l1_name}{l1_suffix}/{l2_name}{l2_suffix}", l2_words))
        tree.append((f"{l1_name}{l1_suffix}", l1_words, children))
    return tree
