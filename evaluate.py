"""Span-level exact-match P/R/F1 of a checkpoint, per label and overall.

    python evaluate.py --model_path checkpoint/model_best --test_path data/doccano_test.jsonl [--label_config c.xml]

The file may hold doccano records (every label of the file, or of --labels, is asked of every text, and every
predicate of every subject) or UIE prompt examples (as doccano.py writes them). With ``--label_config`` the
records (which name labels by their prompts, as a training run's ``doccano.jsonl`` does) are asked what the config
asks (its prompts: ``predicted_values``, else ``UIE_LABEL_PROMPTS``), choices included, and the scores are given per entity label, per
relation and per option, as training reports them. The metric is the one fine-tuning selects by
(``uie_backend/metrics.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from uie_backend import trainer, training
from uie_backend.checkpoint import CheckpointError
from uie_backend.config import Settings
from uie_backend.data import DataError, doccano_to_examples, read_jsonl, record_labels
from uie_backend.labelconfig import LabelConfigError, Schema, parse_label_config


def examples_from_file(path: Path, labels: list[str] | None, schema: Schema | None = None) -> list[dict]:
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path} is empty")
    if "prompt" in rows[0]:
        return rows
    if schema is not None:
        return training.uie_examples(rows, schema)
    labels = labels or record_labels(rows)
    return doccano_to_examples(rows, labels, negative_ratio=len(labels), is_train=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_path", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--test_path", type=Path, required=True, help="doccano JSONL or UIE examples")
    p.add_argument("--labels", nargs="+", help="labels to ask for (doccano input; default: those in the file)")
    p.add_argument("--label_config", type=Path, help="labeling config XML: ask what it asks (doccano input)")
    p.add_argument("--max_seq_len", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--device", default="auto")
    p.add_argument("--report", type=Path, help="also write the scores as JSON here")
    args = p.parse_args(argv)
    try:
        # prompts as the server asks them of a project with no entry of its own in UIE_LABEL_PROMPTS
        schema = parse_label_config(args.label_config.read_text(encoding="utf-8"),
                                    Settings.from_env().prompts()) if args.label_config else None
        report = trainer.evaluate_checkpoint(args.model_path, examples_from_file(args.test_path, args.labels, schema),
                                             args.max_seq_len, args.batch_size, args.threshold, args.device)
    except (DataError, LabelConfigError, CheckpointError, ValueError, OSError) as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(training.scores_markdown("Scores", report, schema)) if schema else report.to_markdown())
    if args.report:
        scores = training.schema_scores(report, schema) if schema else report.to_dict()
        args.report.write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
