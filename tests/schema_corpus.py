"""Synthetic annotated tasks for UIE's whole schema: relations, events (trigger + roles), and choices.

Every task is a Label Studio task with one annotation, shaped as Label Studio 1.23 stores it: span regions with
ids, relation results pointing at them (``from_id``/``to_id``), text-level choices, and per-region choices that
share their region's id.
"""

from __future__ import annotations

import random

RELATION_CONFIG = """<View>
  <Relations><Relation value="父亲"/><Relation value="出生地"/></Relations>
  <Labels name="label" toName="text"><Label value="人物"/><Label value="地点"/></Labels>
  <Text name="text" value="$text"/>
</View>"""

# Both event conventions: PaddleNLP's trigger label ending in 触发词, and the plain event type (DuEE's).
EVENT_CONFIG = """<View>
  <Relations><Relation value="裁员方"/><Relation value="裁员人数"/><Relation value="震中"/></Relations>
  <Labels name="label" toName="text">
    <Label value="组织关系-裁员"/><Label value="地震触发词"/>
    <Label value="裁员方"/><Label value="裁员人数"/><Label value="震中"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

CHOICES_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="label" toName="text"><Label value="产品"/></Labels>
  <Choices name="评价" toName="text" perRegion="true"><Choice value="好评"/><Choice value="差评"/></Choices>
  <Choices name="sentiment" prompt="情感倾向" toName="text"><Choice value="正向"/><Choice value="负向"/></Choices>
</View>"""

PEOPLE = ["张三", "李四", "王五", "赵六", "孙七", "周八", "吴九", "郑十", "钱一", "冯二"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉"]
ORGS = ["华为", "腾讯", "小米", "百度", "京东", "网易"]
PRODUCTS = ["手机", "耳机", "电脑", "相机", "手表", "音箱"]


class _Builder:
    """Builds one text piece by piece, remembering each labelled piece's region."""

    def __init__(self, task_id: int):
        self.task_id, self.text, self.result = task_id, "", []

    def add(self, piece: str, label: str | None = None) -> dict | None:
        start = len(self.text)
        self.text += piece
        if label is None:
            return None
        region = {"id": f"t{self.task_id}r{len(self.result)}", "from_name": "label", "to_name": "text",
                  "type": "labels", "value": {"start": start, "end": len(self.text), "text": piece, "labels": [label]}}
        self.result.append(region)
        return region

    def relate(self, subject: dict, obj: dict, predicate: str) -> None:
        self.result.append({"from_id": subject["id"], "to_id": obj["id"], "type": "relation",
                            "direction": "right", "labels": [predicate]})

    def choose(self, name: str, options: list[str], region: dict | None = None) -> None:
        result = {"id": region["id"] if region else f"t{self.task_id}c", "from_name": name, "to_name": "text",
                  "type": "choices", "value": {"choices": options}}
        if region:
            result["value"] = {**{k: region["value"][k] for k in ("start", "end", "text")}, "choices": options}
        self.result.append(result)

    def task(self) -> dict:
        return {"id": self.task_id, "data": {"text": self.text},
                "annotations": [{"id": self.task_id, "result": self.result, "was_cancelled": False}]}


def relation_tasks(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for n in range(count):
        b = _Builder(n + 1)
        person = b.add(rng.choice(PEOPLE), "人物")
        if n % 3 != 1:
            b.add("的父亲是")
            father = b.add(rng.choice([p for p in PEOPLE if p != person["value"]["text"]]), "人物")
            b.relate(person, father, "父亲")
            b.add("，")
        b.add("出生于" if n % 3 else "从小生活在")
        place = b.add(rng.choice(PLACES), "地点")
        if n % 3:
            b.relate(person, place, "出生地")
        b.add("。")
        tasks.append(b.task())
    return tasks


def event_tasks(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for n in range(count):
        b = _Builder(n + 1)
        if n % 2:
            company = b.add(rng.choice(ORGS), "裁员方")
            b.add("宣布")
            trigger = b.add("裁员", "组织关系-裁员")
            number = b.add(f"{rng.randint(2, 9)}00人", "裁员人数")
            b.add("。")
            b.relate(trigger, company, "裁员方")
            b.relate(trigger, number, "裁员人数")
        else:
            b.add("昨天")
            place = b.add(rng.choice(PLACES), "震中")
            b.add("发生")
            trigger = b.add("地震", "地震触发词")
            b.add("，居民安全。")
            b.relate(trigger, place, "震中")
        tasks.append(b.task())
    return tasks


def choice_tasks(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for n in range(count):
        b = _Builder(n + 1)
        b.add("这款")
        product = b.add(rng.choice(PRODUCTS), "产品")
        good = n % 2 == 0
        b.add(rng.choice(["很好用，推荐。", "质量不错，满意。"]) if good else rng.choice(["太差了，退货。", "很难用，失望。"]))
        b.choose("评价", ["好评" if good else "差评"], product)
        b.choose("sentiment", ["正向" if good else "负向"])
        tasks.append(b.task())
    return tasks
