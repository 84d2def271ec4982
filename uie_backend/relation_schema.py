"""Which predicates to ask of which entities: UIE's schema tree, learnt from a project's annotations.

Label Studio's ``<Relations>`` are untyped: a config lists predicates, not which entity types they join. UIE asks
a predicate of an entity (``"张三的父亲"``), so asking every predicate of every entity found costs a forward pass
per (entity, predicate) and answers mostly nonsense. A training run therefore records, from the annotations,
which predicates each subject label takes and which label their objects have (``{"人物": {"父亲": "人物"}}``,
DuEE's ``{"组织关系-裁员": {"裁员方": "裁员方"}}``), and which labels occur only as the objects of relations
(event roles): those are found through their subjects and never asked on their own. The tree is saved with the
model it was trained with; a model without one (the base) asks no relations unless ``UIE_ASK_ALL_PREDICATES``
says to ask every predicate of every entity found.

The tree is learnt from doccano records, so it names labels and predicates by their prompts (labelconfig.py:
``predicted_values``): what the model was taught, which stays true of the model whatever a config later calls
them; regions.py maps them to the config's values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .data import split_label


@dataclass(frozen=True)
class RelationSchema:
    # subject label -> predicate -> the object labels annotated, most frequent first
    predicates: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    objects_only: frozenset[str] = frozenset()  # labels annotated only as relation objects
    asked_alone: frozenset[str] = frozenset()   # labels annotated as entities in their own right, or as subjects

    def to_dict(self) -> dict:
        return {"predicates": self.predicates, "objects_only": sorted(self.objects_only),
                "asked_alone": sorted(self.asked_alone)}

    def first_stage(self, labels: Sequence[str], predicates: Sequence[str]) -> list[str]:
        """The labels asked of every text: not those annotated only as relation objects, nor a label named like
        a predicate of the config and never annotated on its own. That is an event role by PaddleNLP's
        convention (DuEE's 裁员方 is a label and a relation), found through its trigger; annotated or not, asking
        it of every text costs a pass per text (33 passes per task on DuEE, bench/RESULTS.md)."""
        return [label for label in labels if label not in self.objects_only
                and (label not in predicates or label in self.asked_alone)]

    @classmethod
    def from_dict(cls, data: dict | None) -> "RelationSchema | None":
        if not data:
            return None
        return cls({subject: {p: [o] if isinstance(o, str) else list(o) for p, o in predicates.items()}
                    for subject, predicates in data.get("predicates", {}).items()},
                   frozenset(data.get("objects_only", ())), frozenset(data.get("asked_alone", ())))


def learn(records: Iterable[dict]) -> RelationSchema:
    """The schema tree of doccano records: every (subject label, predicate) annotated, with its object labels
    (most frequent first), and the labels never annotated except as an object."""
    objects: dict[tuple[str, str], Counter[str]] = {}
    as_object: set[str] = set()
    standalone: set[str] = set()
    for record in records:
        labels = {e["id"]: split_label(e["label"])[0] for e in record["entities"]}
        objects_here = {r["to_id"] for r in record.get("relations") or ()}
        for relation in record.get("relations") or ():
            key = (labels[relation["from_id"]], relation["type"])
            objects.setdefault(key, Counter())[labels[relation["to_id"]]] += 1
        for entity_id, label in labels.items():
            (as_object if entity_id in objects_here else standalone).add(label)
    tree: dict[str, dict[str, list[str]]] = {}
    for (subject, predicate), counts in sorted(objects.items()):
        tree.setdefault(subject, {})[predicate] = [label for label, _ in counts.most_common()]
    subjects = set(tree)
    return RelationSchema(tree, frozenset(as_object - standalone - subjects), frozenset(standalone | subjects))
