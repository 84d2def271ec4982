"""Convert a Label Studio export (or legacy /train payload) to doccano JSONL for UIE training.

Usage: python convert.py export.json -o data/doccano.jsonl [--label-config config.xml]
Skipped and unannotated tasks are dropped; tasks annotated with no spans are kept as negatives. Relations
become doccano relations, text-level choices doccano's classification ``label``, and a region's choices are
written after its entity label (``人名##正向``), as PaddleNLP's converter does.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from uie_backend.data import DataError, label_counts, load_tasks, tasks_to_doccano, write_jsonl
from uie_backend.labelconfig import LabelConfigError, parse_label_config


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="Label Studio JSON export, /train payload, or JSONL of tasks")
    parser.add_argument("-o", "--output", type=Path, required=True, help="doccano JSONL to write")
    parser.add_argument(
        "--label-config", type=Path, help="labeling config XML: only its Labels and Choices controls are converted")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        schema = parse_label_config(args.label_config.read_text(encoding="utf-8")) if args.label_config else None
        tasks = load_tasks(args.input)
        records = tasks_to_doccano(tasks, schema)
        write_jsonl(args.output, records)
    except (DataError, LabelConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tasks read: {len(tasks)}")
    print(f"kept: {len(records)}")
    print(f"skipped (no usable annotation): {len(tasks) - len(records)}")
    print(f"negatives (kept, no entities): {sum(1 for r in records if not r['entities'])}")
    print("entities per label:")
    for label, count in sorted(label_counts(records).items()):
        print(f"  {label}: {count}")
    relations = Counter(r["type"] for record in records for r in record["relations"])
    choices = Counter(option for record in records for option in record.get("label", ()))
    for title, counts in (("relations per predicate", relations), ("choices per option", choices)):
        if counts:
            print(f"{title}:")
            for name, count in sorted(counts.items()):
                print(f"  {name}: {count}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
