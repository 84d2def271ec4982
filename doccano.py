"""Split doccano JSONL by task and write UIE training files, like PaddleNLP's own doccano.py.

Usage: python doccano.py --doccano_file data/doccano.jsonl --save_dir data/ --splits 0.8 0.1 0.1
Writes train.txt/dev.txt[/test.txt] (UIE prompt examples) and doccano_train.jsonl etc. (records).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uie_backend.data import (
    DataError, doccano_to_examples, read_jsonl, record_labels, split_records, write_jsonl)
from uie_backend.labelconfig import LabelConfigError, parse_label_config, schema_labels

SPLIT_NAMES = ("train", "dev", "test")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doccano_file", type=Path, default=Path("data/doccano.jsonl"))
    parser.add_argument("--save_dir", type=Path, default=Path("data"))
    parser.add_argument("--negative_ratio", type=int, default=5, help="negative prompts per positive one")
    parser.add_argument("--splits", type=float, nargs="+", default=[0.8, 0.1, 0.1], help="train dev [test]")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--task_type", default="ext", help="only 'ext' (entity extraction) is supported")
    parser.add_argument(
        "--label_config", type=Path, help="labeling config XML: draw negative prompts from all its labels")
    return parser.parse_args(argv)


def _write_splits(args: argparse.Namespace) -> None:
    records = read_jsonl(args.doccano_file)
    # One candidate list for every split, so dev and test are asked the same prompts as train.
    if args.label_config:
        labels = schema_labels(parse_label_config(args.label_config.read_text(encoding="utf-8")))
    else:
        labels = record_labels(records)
    splits = split_records(records, args.splits, args.seed)
    # Build every split before writing any, so bad data never leaves a half-updated save_dir.
    built = [(name, records, doccano_to_examples(records, labels, args.negative_ratio, args.seed))
             for name, records in zip(SPLIT_NAMES, splits)]
    for name, records, examples in built:
        write_jsonl(args.save_dir / f"{name}.txt", examples)
        write_jsonl(args.save_dir / f"doccano_{name}.jsonl", records)
        negatives = sum(1 for example in examples if not example["result_list"])
        print(f"{name}: {len(records)} tasks, {len(examples)} examples ({negatives} negative)")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.task_type != "ext":
            raise DataError(f"--task_type {args.task_type!r} is not supported: only 'ext' (entity extraction)")
        _write_splits(args)
    except (DataError, LabelConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
