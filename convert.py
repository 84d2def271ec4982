"""Convert a Label Studio export (or legacy /train payload) to doccano JSONL for UIE training.

Usage: python convert.py export.json -o data/doccano.jsonl [--label-config config.xml]
       [--task_type ext|cls] [--separator ##]
Skipped and unannotated tasks are dropped; tasks annotated with no spans are kept as negatives. Relations
become doccano relations, text-level choices doccano's classification ``label``, and a region's choices are
written after its entity label (``人名##正向``, ``--separator``), as PaddleNLP's converter does.
``--task_type cls`` writes doccano's classification records (``id``, ``text``, ``label``) of the tasks that
have a text-level choice. The classification prompt's prefix and options are given where prompts are made:
``doccano.py --prompt_prefix ... --options ...`` (or the labeling config).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from uie_backend.data import SEPARATOR, DataError, label_counts, load_tasks, tasks_to_doccano, write_jsonl
from uie_backend.labelconfig import LabelConfigError, parse_label_config


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="Label Studio JSON export, /train payload, or JSONL of tasks")
    parser.add_argument("-o", "--output", type=Path, required=True, help="doccano JSONL to write")
    parser.add_argument(
        "--label-config", type=Path, help="labeling config XML: only its Labels and Choices controls are converted")
    parser.add_argument("--task_type", choices=("ext", "cls"), default="ext",
                        help="ext: entities, relations, choices; cls: text classification records only")
    parser.add_argument("--separator", default=SEPARATOR, help="between an entity label and its region's choices")
    return parser.parse_args(argv)


def _as_task_type(records: list[dict], task_type: str, separator: str) -> list[dict]:
    if task_type == "cls":
        return [{key: r[key] for key in ("id", "text", "label")} for r in records if r.get("label")]
    return [{**r, "entities": [{**e, "label": e["label"].replace(SEPARATOR, separator)} for e in r["entities"]]}
            for r in records]


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        schema = parse_label_config(args.label_config.read_text(encoding="utf-8")) if args.label_config else None
        tasks = load_tasks(args.input)
        records = tasks_to_doccano(tasks, schema)
        write_jsonl(args.output, _as_task_type(records, args.task_type, args.separator))
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
