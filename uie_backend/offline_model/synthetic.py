"""Seeded synthetic sentences for the labels no public Chinese corpus annotates: 价格 (price), 天气 (weather).

Only these two labels are asked of the generated sentences (their other entities stay unlabelled and are
never prompted for), and their scores are reported apart, as synthetic: they show the model can learn
the pattern, not how it does on real text.
"""

from __future__ import annotations

import random
import re

PRODUCTS = ["手机", "笔记本电脑", "耳机", "冰箱", "洗衣机", "电视", "运动鞋", "羽绒服", "咖啡机", "平板电脑"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆", "天津", "长沙"]
WEATHER = ["晴", "多云", "阴", "小雨", "中雨", "大雨", "暴雨", "雷阵雨", "小雪", "大雪", "雨夹雪", "晴转多云",
           "多云转小雨", "阵雨", "大雾", "沙尘暴"]
TEMPLATES = [
    ("这款{product}现在只要{价格}，比上周便宜了不少。", "价格"),
    ("{product}的售价是{价格}。", "价格"),
    ("我花了{价格}买了一台{product}。", "价格"),
    ("店里的{product}标价{价格}，打折后更划算。", "价格"),
    ("{place}明天{天气}，出门记得带伞。", "天气"),
    ("天气预报说{place}今天{天气}，气温{low}到{high}度。", "天气"),
    ("周末{place}将迎来{天气}天气。", "天气"),
    ("受冷空气影响，{place}今晚有{天气}。", "天气"),
    ("{place}今天{天气}，这台{product}只卖{价格}。", "价格 天气"),
]

# Any sign that a real sentence might hold a price or a weather word. A sentence without one can safely
# teach "no 价格/天气 here" (recipe.absent_label_examples); a sentence with one is left out, not judged.
CUES = {"价格": re.compile(r"[元块¥￥$钱价]"), "天气": re.compile(r"[雨雪晴阴雾霾霜雹风云冷热暖寒]|气温|天气|温度")}


def may_mention(label: str, text: str) -> bool:
    """Whether ``text`` shows a sign of holding a ``label`` (价格 or 天气) span."""
    return bool(CUES[label].search(text))


def price(rng: random.Random) -> str:
    amount = rng.choice([rng.randint(9, 999), rng.randint(1000, 19999), round(rng.uniform(1, 99), 2)])
    return rng.choice(["{}元", "¥{}", "{}块", "{}块钱", "人民币{}元"]).format(amount)


def sentences(count: int, seed: int) -> list[dict]:
    """Doccano records (``id`` = ``synthetic-<n>``) with their 价格/天气 entities."""
    rng = random.Random(seed)
    records = []
    for n in range(count):
        template, _ = rng.choice(TEMPLATES)
        values = {"product": rng.choice(PRODUCTS), "place": rng.choice(PLACES), "low": str(rng.randint(-5, 15)),
                  "high": str(rng.randint(16, 35)), "价格": price(rng), "天气": rng.choice(WEATHER)}
        text, entities, rest = "", [], template
        while "{" in rest:
            before, _, after = rest.partition("{")
            key, _, rest = after.partition("}")
            text += before
            if key in ("价格", "天气"):
                entities.append({"id": len(entities), "start_offset": len(text),
                                 "end_offset": len(text) + len(values[key]), "label": key})
            text += values[key]
        records.append({"id": f"synthetic-{n}", "text": text + rest, "entities": entities, "relations": []})
    return records
