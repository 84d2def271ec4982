"""LAC (Baidu's lexical analysis model, the `lac` package) beside the embedded UIE, on the same sentences.

    .venv/bin/python bench/lac_baseline.py --corpora ../shared/data/ner [--model models/uie-zh-small]

LAC runs as uie_backend/lac.py runs it (fetched from PyPI once into ``.cache/lac/``); scoring is the span
exact match of every other report, on the evaluation sets of the model card.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import REPO, machine, quiet_logs

SETS = [  # (name, file, labels, part)
    ("People's Daily dev", "peoples_daily/dev.json", ["人名", "地名", "组织"], None),
    ("People's Daily (time) held-out half", "peoples_daily_time/dev.json", ["人名", "地名", "组织", "时间"], "heldout"),
    ("Weibo dev", "weibo/dev.json", ["人名", "地名", "组织"], None),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora", type=Path, required=True, help="folder of the public corpora (../shared/data/ner)")
    p.add_argument("--model", type=Path, default=REPO / "models" / "uie-zh-small")
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "lac")
    args = p.parse_args()
    quiet_logs()
    machine()
    from uie_backend import checkpoint
    from uie_backend.lac import Lac, fetch
    from uie_backend.config import Settings
    from uie_backend.data import load_tasks, split_records, tasks_to_doccano
    from uie_backend.metrics import score_spans, spans_from_doccano
    from uie_backend.predictor import ModelSource, Predictor
    from uie_backend.recipe import PART_SEED

    lac = Lac(fetch(args.cache))
    uie = Predictor(ModelSource(version=checkpoint.model_version(args.model), path=args.model),
                    Settings.from_env({"UIE_DEVICE": "cpu"}))
    for name, file, labels, part in SETS:
        records = tasks_to_doccano(load_tasks(args.corpora / file))
        if part:
            records = split_records(records, (0.5, 0.5), seed=PART_SEED)[1]
        texts = [record["text"] for record in records]
        gold = [{s for s in spans_from_doccano(record) if s[0] in labels} for record in records]
        by_lac = [{s for s in spans if s[0] in labels} for spans in lac.spans(texts)]
        by_uie = [{(e.label, e.start, e.end) for e in entities} for entities in uie.extract(texts, labels)]
        print(f"\n### {name} ({len(texts)} sentences)\n")
        print("| label | LAC P | LAC R | LAC F1 | UIE P | UIE R | UIE F1 | support |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        lac_report, uie_report = score_spans(gold, by_lac), score_spans(gold, by_uie)
        for label in [*labels, None]:
            a = lac_report.per_label.get(label) if label else lac_report.overall
            b = uie_report.per_label.get(label) if label else uie_report.overall
            if a is None or b is None:
                continue
            print(f"| {label or '**overall**'} | {a.precision:.3f} | {a.recall:.3f} | {a.f1:.3f} | "
                  f"{b.precision:.3f} | {b.recall:.3f} | {b.f1:.3f} | {a.support} |")


if __name__ == "__main__":
    main()
