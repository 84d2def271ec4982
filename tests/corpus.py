"""A small synthetic annotated corpus, made on the fly: what the learning tests train and check on.

Sentences are built from templates and entity lists, so every span's offsets are known exactly; the
"new" sentences put the same entities into templates the model never saw, which is what an annotator's
next task looks like. The two helpers at the end make a project of a real export's tasks (the tests and
benchmarks that read ../shared's corpora).
"""

from __future__ import annotations

import random

LABEL_CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="人名"/><Label value="地名"/><Label value="组织"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

PEOPLE = ["张三", "李四", "王五", "赵六", "孙七", "周八", "吴九", "郑十"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉"]
ORGS = ["华为", "阿里巴巴", "腾讯", "小米", "百度", "京东"]

TRAIN_TEMPLATES = [
    "{人名}昨天去了{地名}出差。",
    "{地名}的{人名}很开心。",
    "听说{人名}住在{地名}附近。",
    "{人名}在{组织}工作了三年。",
    "{组织}在{地名}开了新店。",
]
NEW_TEMPLATES = [
    "今天{人名}和同事在{地名}见面。",
    "{人名}说{组织}的产品不错。",
]


def sentence(template: str, rng: random.Random, pools: dict[str, list[str]] | None = None
             ) -> tuple[str, list[tuple[str, int, int]]]:
    """Fill a template (from ``pools``, label -> values, default all); returns the text and its spans."""
    pools = pools or {"人名": PEOPLE, "地名": PLACES, "组织": ORGS}
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        label, _, rest = after.partition("}")
        text += before
        value = rng.choice(pools[label])
        spans.append((label, len(text), len(text) + len(value)))
        text += value
    return text + rest, spans


def task(task_id: int, text: str, spans, annotated: bool = True) -> dict:
    """A task as Label Studio exports it (and sends it in /train)."""
    result = [{"id": f"r{task_id}-{i}", "from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
              for i, (label, s, e) in enumerate(spans)]
    annotations = [{"id": task_id, "result": result, "was_cancelled": False, "ground_truth": False,
                    "created_at": "2026-11-29T08:00:00Z"}] if annotated else []
    return {"id": task_id, "data": {"text": text}, "annotations": annotations}


def annotated_tasks(count: int, seed: int = 0, templates=TRAIN_TEMPLATES) -> list[dict]:
    rng = random.Random(seed)
    return [task(i + 1, *sentence(templates[i % len(templates)], rng)) for i in range(count)]


def label_config(labels: list[str]) -> str:
    """A labeling config of one ``<Labels>`` control with ``labels`` over the text."""
    values = "".join(f'<Label value="{label}"/>' for label in labels)
    return f'<View><Labels name="label" toName="text">{values}</Labels><Text name="text" value="$text"/></View>'


def keep_labels(tasks: list[dict], labels: list[str]) -> list[dict]:
    """The tasks with only the regions of ``labels`` (the annotators of a project that labels only those)."""
    return [{**task, "annotations": [{**a, "result": [r for r in a["result"] if r["value"]["labels"][0] in labels]}
                                     for a in task["annotations"]]} for task in tasks]
