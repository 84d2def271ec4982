"""What a label's prompt is worth: the same People's Daily spans labelled 人名/地名/组织, PER/LOC/ORG, and
PER/LOC/ORG with ``predicted_values`` naming the Chinese prompts, predicted through ``/predict`` in one run.

    .venv/bin/python bench/label_prompts.py [--data ../shared/data/ner/peoples_daily/dev.json] [--tasks N]
        [--model DIR (default: the embedded model)] [--page 200]

Each config's tasks carry the gold relabelled to that config's values; the backend's own app (``server.create_app``
with ``UIEBackend``, Flask's test client: the whole ``/predict`` path but the socket) predicts them a page at a
time with the embedded model, and the regions it returns are scored against the gold by exact span
(``task_scores.span_report``), per label value and overall.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import EMBEDDED_MODEL, REPO, machine, quiet_logs, temp_home
from task_scores import gold_result, span_report

CHINESE = {"PER": "人名", "LOC": "地名", "ORG": "组织"}
TEXT = '<Text name="text" value="$text"/>'


def config(labels: list[str], prompts: dict[str, str] | None = None) -> str:
    tags = "".join(f'<Label value="{label}"' + (f' predicted_values="{prompts[label]}"' if prompts else "") + "/>"
                   for label in labels)
    return f'<View>{TEXT}<Labels name="label" toName="text">{tags}</Labels></View>'


CONFIGS = {  # name -> (label config, gold label -> this config's value)
    "人名/地名/组织": (config(list(CHINESE.values())), {v: v for v in CHINESE.values()}),
    "PER/LOC/ORG, predicted_values 人名/地名/组织": (config(list(CHINESE), CHINESE),
                                                 {v: k for k, v in CHINESE.items()}),
    "PER/LOC/ORG": (config(list(CHINESE)), {v: k for k, v in CHINESE.items()}),
}


def relabelled(tasks: list[dict], value_of: dict[str, str]) -> list[dict]:
    """The tasks with their gold regions renamed to a config's values (a team that labelled PER, not 人名)."""
    out = []
    for task in tasks:
        result = [{**r, "value": {**r["value"], "labels": [value_of[label] for label in r["value"]["labels"]]}}
                  for r in gold_result(task)]
        out.append({"id": task["id"], "data": task["data"], "annotations": [{"id": task["id"], "result": result}]})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ner/peoples_daily/dev.json")
    p.add_argument("--tasks", type=int, default=0, help="the first N tasks (0: all)")
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL)
    p.add_argument("--page", type=int, default=200, help="tasks per /predict")
    args = p.parse_args()
    quiet_logs()
    with temp_home() as home:
        os.environ.update({"UIE_CHECKPOINT_DIR": str(home / "checkpoint"), "UIE_DATA_DIR": str(home / "data"),
                           "UIE_DEFAULT_MODEL": str(args.model.resolve()), "UIE_MODEL": "", "UIE_LABEL_PROMPTS": "",
                           "UIE_PREANNOTATE": "false", "UIE_PREDICT_TIMEOUT": "0", "UIE_MAX_TASKS": str(args.page)})
        from my_ml_backend import UIEBackend
        from uie_backend.data import load_tasks
        from uie_backend.server import create_app

        tasks = load_tasks(args.data)[:args.tasks or None]
        client = create_app(UIEBackend).test_client()
        print(f"# Label names and prompts: {args.data.name}, {len(tasks)} tasks, model {args.model.name}\n")
        machine()
        print()
        print("| labels | P | R | F1 | " + " | ".join(CHINESE) + " (F1) | s |")
        print("|---|---:|---:|---:|" + "---:|" * len(CHINESE) + "---:|")
        for name, (label_config, value_of) in CONFIGS.items():
            gold_tasks = relabelled(tasks, value_of)
            started, predicted = time.perf_counter(), []
            for at in range(0, len(gold_tasks), args.page):
                page = [{"id": t["id"], "data": t["data"]} for t in gold_tasks[at:at + args.page]]
                answer = client.post("/predict", json={"tasks": page, "label_config": label_config})
                assert answer.status_code == 200, answer.get_json()
                predicted += [r["result"] for r in answer.get_json()["results"]]
            seconds = time.perf_counter() - started
            report = span_report([gold_result(t) for t in gold_tasks], predicted)
            per = report.per_label
            cells = " | ".join(f"{per[value_of[c]].f1:.3f}" if value_of[c] in per else "–" for c in CHINESE.values())
            o = report.overall
            print(f"| {name} | {o.precision:.3f} | {o.recall:.3f} | {o.f1:.3f} | {cells} | {seconds:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
