"""UIE's whole schema on DuEE events: how many forward passes hierarchical prediction saves, at what speed and
with what output, against asking the whole schema of every text.

    .venv/bin/python bench/schema.py [--data ../shared/data/events] [--tasks 100] [--repeats 1]
        [--model DIR (default: the embedded model)]

The same tasks (the first ``--tasks`` of ``dev.json``, DuEE: 65 event-type trigger labels, 121 role labels, each
role a relation trigger -> argument) are predicted by ``regions.predict_tasks`` with one model three ways:

* ``flat``: what the backend did before it knew relations: every label of the config asked of every text, no
  relation prompts (a model with no schema tree, ``ask_all_predicates`` off);
* ``flat + every predicate``: relations without a schema tree: every label of every text, then every predicate
  asked of every entity found (``"{entity}的{predicate}"``; ``UIE_ASK_ALL_PREDICATES=true``);
* ``hierarchical``: the schema tree a training run learns: labels annotated only as relation objects (roles) are
  not asked; only the predicates learnt for an entity's label are asked of it.

The model is the embedded one (it never saw DuEE), copied with the schema tree that Start Training would store
with it: ``relation_schema.learn`` over the doccano records of every task in the file (a project's annotations).
Forward passes are the examples (text window × prompt) sent to the engine, counted by wrapping
``Predictor._engine.answer``. Each mode is warmed up on a few tasks first, then timed, interleaved.
What each mode produces is scored against the gold: trigger spans (event type, start, end) and role triples
(role, trigger span, argument span), so that speed is not bought with missing output.

The relation stage asks about the entities the model finds, so its size depends on the model: the table also
gives the forward passes a model finding exactly the gold entities would make (computed from the annotations).
The default of 100 tasks keeps a run near 8 minutes on 2 cores: ``flat + every predicate`` alone makes about
950 forward passes per task with the embedded model.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from common import (EMBEDDED_MODEL, REPO, backend_env, machine, median, progress, quiet_logs, side_by_side, table,
                    temp_home)
from task_scores import gold_result, span_report, triple_report

WARMUP_TASKS = 8  # per mode, untimed: the first calls of new input shapes build oneDNN kernels


class ForwardPassCounter:
    """Counts the examples (text window × prompt) a predictor's engine is sent, and the seconds the engine took
    (encoding, forward passes, decoding), by prediction stage: an example is one sequence through the model, the
    unit the hierarchical prediction is meant to save; the seconds show what one costs at each stage."""

    def __init__(self, predictor: Any):
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.prompt_chars: Counter[str] = Counter()
        self.stage = "entities"
        answer = predictor._engine.answer

        def counted(queries, threshold):
            self.counts[self.stage] += len(queries)
            self.prompt_chars[self.stage] += sum(len(prompt) for _, prompt in queries)
            began = time.perf_counter()
            try:
                return answer(queries, threshold)
            finally:
                self.seconds[self.stage] += time.perf_counter() - began

        predictor._engine.answer = counted

    @contextmanager
    def at(self, stage: str) -> Iterator[None]:
        previous, self.stage = self.stage, stage
        try:
            yield
        finally:
            self.stage = previous


class SchemaView:
    """One loaded :class:`Predictor` seen with a given schema tree (None: a model that never learnt relations),
    so that the three modes share the model, its kernels and its caches, and differ only in what they ask.

    ``predict_tasks`` calls ``extract`` for the entity stage and ``ask`` for relation and choice prompts."""

    def __init__(self, predictor: Any, counter: ForwardPassCounter, relation_schema: Any):
        self.predictor, self.counter, self.relation_schema = predictor, counter, relation_schema
        self.version = predictor.version

    def extract(self, texts: Sequence[str], labels: Sequence[str], deadline: float | None = None) -> list[list]:
        with self.counter.at("entities"):
            return self.predictor.extract(texts, labels, deadline)

    def ask(self, queries: Sequence[tuple[str, str]], deadline: float | None = None) -> list[list]:
        with self.counter.at("relations"):
            return self.predictor.ask(queries, deadline)


def write_schema_tree(model_dir: Path, learnt: Any) -> None:
    """Store the tree in the model's uie_meta.json, where a training run stores it (training.run's meta)."""
    from uie_backend import checkpoint
    from uie_backend.jsonio import write_json

    write_json(model_dir / checkpoint.META_FILE, {**checkpoint.read_meta(model_dir), "relation_schema": learnt.to_dict()})


def describe_tree(schema: Any, learnt: Any, task_count: int) -> str:
    """What the learnt tree holds, and therefore what the hierarchical first stage asks."""
    asked = [label for label in schema.labels if label not in learnt.objects_only]
    roles = set(schema.predicates)
    never_seen = [label for label in asked if label in roles]
    per_subject = [len(p) for p in learnt.predicates.values()]
    return (f"Schema tree learnt from the {task_count} annotated tasks of the file: {len(learnt.predicates)} event "
            f"types with roles ({min(per_subject)}–{max(per_subject)} each, mean {statistics.mean(per_subject):.1f}); "
            f"{len(learnt.objects_only)} role labels annotated only as relation objects, so not asked at the first "
            f"stage; {len(never_seen)} role labels of event types absent from the annotations, so still asked as "
            f"entities. First stage: {len(asked)} of the {len(schema.labels)} labels per text.")


def passes_on_gold(result: Sequence[dict], schema: Any, tree: Any, ask_all: bool) -> int:
    """Forward passes for one task of one window if the first stage found exactly the gold regions: the entity
    prompts, then one per distinct (subject text, predicate) asked, as ``regions._Queries`` deduplicates them."""
    objects_only = tree.objects_only if tree is not None else frozenset()
    entity_prompts = sum(1 for label in schema.labels if label not in objects_only)
    asked = set()
    for r in result:
        if r.get("type") == "labels":
            label, subject = r["value"]["labels"][0], r["value"]["text"]
            if tree is not None:
                predicates = tree.predicates.get(label, {})
            else:
                predicates = schema.predicates if ask_all else ()
            asked.update((subject, predicate) for predicate in predicates)
    return entity_prompts + len(asked)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "events",
                   help="folder with dev.json and labeling_config.xml (DuEE)")
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL)
    p.add_argument("--tasks", type=int, default=100, help="tasks predicted (the first N of dev.json)")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per mode (median); the counts are exact")
    args = p.parse_args()
    quiet_logs()
    measured_on = machine()
    from uie_backend import checkpoint, regions, relation_schema
    from uie_backend.config import Settings
    from uie_backend.data import load_tasks, tasks_to_doccano
    from uie_backend.labelconfig import parse_label_config
    from uie_backend.lineages import ModelSource
    from uie_backend.predictor import Predictor

    schema = parse_label_config((args.data / "labeling_config.xml").read_text(encoding="utf-8"))
    every_task = load_tasks(args.data / "dev.json")
    tasks = every_task[:args.tasks]
    learnt = relation_schema.learn(tasks_to_doccano(every_task, schema))
    tree_line = describe_tree(schema, learnt, len(every_task))
    print(tree_line)
    trigger_labels = [label for label in schema.labels if label not in schema.predicates]  # roles share the names
    gold = [gold_result(task) for task in tasks]

    with temp_home() as home:
        model_dir = home / "model"
        shutil.copytree(args.model, model_dir)
        write_schema_tree(model_dir, learnt)
        settings = Settings.from_env(backend_env(home))
        predictor = Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir), settings)
        assert predictor.relation_schema == learnt, "the copy's uie_meta.json did not give the predictor its tree"
        counter = ForwardPassCounter(predictor)
        modes = {"flat": (None, False), "flat + every predicate": (None, True),
                 "hierarchical": (predictor.relation_schema, False)}
        outputs: dict[str, list[dict]] = {}
        passes: dict[str, Counter[str]] = {}
        engine_seconds: dict[str, list[Counter[str]]] = {name: [] for name in modes}
        prompt_chars: dict[str, Counter[str]] = {}

        def predict(name: str, some_tasks: Sequence[dict]) -> list[dict]:
            tree, ask_all = modes[name]
            counter.counts, counter.seconds, counter.prompt_chars = Counter(), Counter(), Counter()
            predictions, errors = regions.predict_tasks(some_tasks, schema, SchemaView(predictor, counter, tree),
                                                        ask_all_predicates=ask_all)
            assert not errors, errors
            return predictions

        def timed(name: str) -> Callable[[], None]:
            def call() -> None:
                outputs[name] = predict(name, tasks)
                assert passes.setdefault(name, counter.counts) == counter.counts, "counts differ between repeats"
                engine_seconds[name].append(counter.seconds)
                prompt_chars[name] = counter.prompt_chars
            return call

        for name in modes:
            progress(f"{name}: warm-up on {WARMUP_TASKS} tasks")
            predict(name, tasks[:WARMUP_TASKS])
        progress(f"timing {len(modes)} modes on {len(tasks)} tasks, {args.repeats} pass(es) each")
        began = time.perf_counter()
        seconds = {name: median(samples) for name, samples in
                   side_by_side({name: timed(name) for name in modes}, args.repeats, warmup=0).items()}
        progress(f"done in {time.perf_counter() - began:.0f} s")

    timing = "one timed pass" if args.repeats == 1 else f"median of {args.repeats} passes"
    totals = {name: sum(passes[name].values()) for name in modes}
    speed_rows, quality_rows = [], []
    for name in modes:
        total = totals[name]
        speed_rows.append([
            name, f"{passes[name]['entities']:,}", f"{passes[name]['relations']:,}", f"{total:,}",
            f"{total / len(tasks):.1f}", f"{totals['flat'] / total:.2f}×", f"{totals['flat + every predicate'] / total:.2f}×",
            f"{statistics.mean(passes_on_gold(g, schema, *modes[name]) for g in gold):.1f}",
            f"{seconds[name]:.1f}", " + ".join(f"{median([s[stage] for s in engine_seconds[name]]):.1f}"
                                               for stage in ("entities", "relations")),
            f"{total / seconds[name]:.0f}", f"{len(tasks) / seconds[name]:.2f}"])
        predicted = [prediction["result"] for prediction in outputs[name]]
        triggers = span_report(gold, predicted, trigger_labels).overall
        roles = triple_report(gold, predicted).overall
        region_count = sum(1 for result in predicted for r in result if r.get("type") == "labels")
        relation_count = sum(1 for result in predicted for r in result if r.get("type") == "relation")
        quality_rows.append([
            name, f"{region_count / len(tasks):.2f}", f"{relation_count / len(tasks):.2f}",
            f"{triggers.precision:.3f}", f"{triggers.recall:.3f}", f"{triggers.f1:.3f}", f"{triggers.correct}",
            f"{roles.precision:.3f}", f"{roles.recall:.3f}", f"{roles.f1:.3f}", f"{roles.correct}"])

    print(f"\n{len(tasks)} DuEE dev tasks (mean {statistics.mean(len(t['data']['text']) for t in tasks):.0f} chars), "
          f"{len(schema.labels)} labels ({len(trigger_labels)} event types, {len(schema.predicates)} roles), "
          f"model {args.model.name}. {measured_on}")
    table(f"Forward passes (text window × prompt sent to the engine) and speed, {timing} per mode",
          ["mode", "entity stage", "relation stage", "forward passes", "per task", "flat ÷ this",
           "flat+every predicate ÷ this", "per task if exactly the gold entities were found", "s",
           "engine s: entity + relation stage", "forward passes/s", "tasks/s"],
          speed_rows)
    print("\nMean prompt length, characters (entity stage / relation stage): " + "; ".join(
        f"{name} {prompt_chars[name]['entities'] / passes[name]['entities']:.1f} / "
        f"{prompt_chars[name]['relations'] / max(1, passes[name]['relations']):.1f}" for name in modes))
    nothing = [[] for _ in gold]
    gold_triggers = span_report(gold, nothing, trigger_labels).overall.support
    gold_roles = triple_report(gold, nothing).overall.support
    table(f"What each mode predicts, scored against the gold ({gold_triggers} trigger spans, {gold_roles} role "
          f"triples): trigger = (event type, start, end), role triple = (role, trigger span, argument span), exact",
          ["mode", "regions/task", "relations/task", "trigger P", "trigger R", "trigger F1", "triggers correct",
           "role P", "role R", "role F1", "roles correct"], quality_rows)


if __name__ == "__main__":
    main()
