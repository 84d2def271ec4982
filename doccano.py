"""Split doccano JSONL by task and write UIE training files, like PaddleNLP's own doccano.py.

Usage: python doccano.py --doccano_file data/doccano.jsonl --save_dir data/ --splits 0.8 0.1 0.1
       python doccano.py --task_type cls --prompt_prefix 情感倾向 --options 正向 负向 --doccano_file cls.jsonl
Writes train.txt/dev.txt[/test.txt] (UIE prompt examples) and doccano_train.jsonl etc. (records).

``ext`` records hold entities and relations (an entity label ``人名##正向`` is also an entity-level choice of
``--options`` under ``--prompt_prefix``); ``cls`` records hold doccano's ``label`` list. With ``--label_config``
the labeling config gives the labels, predicates, prefixes and options instead, as in training (the records name
them by their prompts: ``predicted_values``, else ``UIE_LABEL_PROMPTS``, else the value).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uie_backend.config import Settings
from uie_backend.data import (
    SEPARATOR, DataError, doccano_to_examples, read_jsonl, record_labels, split_records, write_jsonl)
from uie_backend.labelconfig import ChoicesControl, LabelConfigError, Schema, SpanControl, parse_label_config

SPLIT_NAMES = ("train", "dev", "test")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doccano_file", type=Path, default=Path("data/doccano.jsonl"))
    parser.add_argument("--save_dir", type=Path, default=Path("data"))
    parser.add_argument("--negative_ratio", type=int, default=5, help="negative prompts per positive one")
    parser.add_argument("--splits", type=float, nargs="+", default=[0.8, 0.1, 0.1], help="train dev [test]")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--task_type", choices=("ext", "cls"), default="ext",
                        help="ext: entities, relations, events (and entity-level choices); cls: text classification")
    parser.add_argument("--prompt_prefix", default="情感倾向", help="what the options are a choice of")
    parser.add_argument("--options", nargs="+", default=["正向", "负向"], help="the choices")
    parser.add_argument("--separator", default=SEPARATOR,
                        help="between an entity label and its region's choices: 人名##正向")
    parser.add_argument(
        "--label_config", type=Path, help="labeling config XML: its labels, relations and choices, as in training")
    return parser.parse_args(argv)


def _schema(args: argparse.Namespace, records: list[dict]) -> Schema:
    """The config's schema, or one made of the records' labels and the command line's classification."""
    if args.label_config:
        # doccano's records name labels as the model is asked: the config's prompts (UIE_LABEL_PROMPTS' global
        # entries: a CLI run names no project)
        return parse_label_config(args.label_config.read_text(encoding="utf-8"), Settings.from_env().prompts())
    choices = ChoicesControl("cli", "text", "text", tuple(args.options), args.prompt_prefix,
                             per_region=args.task_type == "ext", multiple=False)
    labels = tuple(record_labels(records)) if args.task_type == "ext" else ()
    return Schema((SpanControl("cli", "text", "text", labels),) if labels else (), choices=(choices,))


def _with_separator(records: list[dict], separator: str) -> list[dict]:
    if separator == SEPARATOR:
        return records
    for record in records:
        for entity in record.get("entities") or ():
            if isinstance(entity, dict) and isinstance(entity.get("label"), str):
                entity["label"] = entity["label"].replace(separator, SEPARATOR)
    return records


def _write_splits(args: argparse.Namespace) -> None:
    records = _with_separator(read_jsonl(args.doccano_file), args.separator)
    if args.task_type == "cls":  # doccano's classification records: text and label, no spans
        records = [{**record, "entities": record.get("entities") or []} for record in records]
    schema = _schema(args, records)
    splits = split_records(records, args.splits, args.seed)
    # Build every split before writing any, so bad data never leaves a half-updated save_dir. Train gets
    # sampled negatives; dev and test are asked every label and predicate, as in training (training.py).
    built = []
    for name, split in zip(SPLIT_NAMES, splits):
        train = name == "train"
        examples = doccano_to_examples(
            split, schema.prompts, args.negative_ratio if train else len(schema.prompts), args.seed,
            predicates=schema.predicate_prompts or None, choices=schema.choices, is_train=train)
        built.append((name, split, examples))
    for name, split, examples in built:
        write_jsonl(args.save_dir / f"{name}.txt", examples)
        write_jsonl(args.save_dir / f"doccano_{name}.jsonl", split)
        negatives = sum(1 for example in examples if not example["result_list"])
        print(f"{name}: {len(split)} tasks, {len(examples)} examples ({negatives} negative)")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        _write_splits(args)
    except (DataError, LabelConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
