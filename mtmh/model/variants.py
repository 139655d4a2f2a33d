"""The models the paper compares, as data: which inputs the tower reads and what each head
optimises. Every variant trains with the same co-engagement loss machinery (mtmh/losses.py).

Head objectives: "e" = L_e, "mt" = L_e + w_r * L_r, "r" = L_r alone.
Inputs: "id" (item id table), "side" (categorical + dense side features, non-content),
"content_features" (the frozen text-backbone features, MoL-style), "teacher" (the content
encoder's embedding F as an input feature, HLLM-style). MTMH reads no content: content
knowledge enters only through L_r.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HeadObjective = Literal["e", "mt", "r"]
Input = Literal["id", "side", "content_features", "teacher"]
HEADS = ("engagement", "relevance")


@dataclass(frozen=True)
class Variant:
    name: str
    inputs: tuple[Input, ...]
    heads: dict[str, HeadObjective]  # head name -> its objective
    # False: the embedding is the item's own id row, with no MLP (the paper's ItemCF: what
    # separates it from NeuCF is exactly that it has no DNN).
    mlp: bool = True
    # One prompt per cluster on the query side, and in-cluster hard negatives (DAT).
    prompted: bool = False

    @property
    def needs_teacher_logits(self) -> bool:
        return any(obj in ("mt", "r") for obj in self.heads.values())


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mtmh", ("id", "side"), {"engagement": "e", "relevance": "mt"}),
        Variant("mtsh", ("id", "side"), {"engagement": "mt"}),
        Variant("stmh", ("id", "side"), {"engagement": "e", "relevance": "r"}),
        Variant("itemcf", ("id",), {"engagement": "e"}, mlp=False),
        Variant("neucf", ("id", "side"), {"engagement": "e"}),
        Variant("mol", ("id", "side", "content_features"), {"engagement": "e"}),
        Variant("hllm", ("id", "side", "teacher"), {"engagement": "e"}),
        Variant("dat", ("id", "side"), {"engagement": "e"}, prompted=True),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown model variant {name!r}; expected one of {sorted(VARIANTS)}"
        ) from None
