"""News and encyclopedia sentences dressed as social-media posts: the licence-clean way to show a model
what surrounds names in a post.

A model that learnt only from 1998 news and Wikipedia has never seen an @handle, a t.cn link, a #topic#,
an emoticon tag ``[哈哈]`` or a row of 哈哈哈. On Weibo it runs names into them (``赵新民哈哈哈…``,
``刘诗诗”，你也快来表态吧！http://…``) and takes handles for people. No licence-clean corpus of posts with
their entities was found (docs/text-sources.md), so this module puts such pieces, from lists written for
this project, around and between the entities of sentences whose licence allows training, and keeps every
entity where it was: the pieces are never part of an entity, and an entity keeps its exact text.
"""

from __future__ import annotations

import random
import string

LAUGHS = ["哈哈", "哈哈哈", "哈哈哈哈哈哈", "呵呵", "嘿嘿", "嘻嘻", "啊啊啊", "！！！", "～～", "。。。", "……", "？？", "hhh"]
EMOTICONS = ["[哈哈]", "[偷笑]", "[爱你]", "[泪]", "[鼓掌]", "[嘻嘻]", "[抓狂]", "[赞]", "[衰]", "[怒]", "[心]",
             "[good]", "[威武]", "[围观]", "[思考]", "[酷]"]
EMOJI = ["😂", "❤", "👍", "😭", "🙏", "😊", "🌹", "✌", "🔥"]
NICK_WORDS = ["小鱼", "糖果", "阿猫", "木子", "晴天", "南瓜", "小熊", "橘子", "兔兔", "大白", "阿呆", "星星", "柠檬",
              "饭团", "奶茶", "土豆", "胖虎", "小新", "可乐", "布丁"]
TAGS = ["转发微博", "分享图片", "我在这里", "求扩散", "有图有真相", "早安", "晚安", "围观", "太赞了", "好想去"]
PAUSES = set("，。！？；：、,.!?;:")
LEADS = ["//@{handle}:", "回复@{handle}:", "@{handle} ", "转发：", "【{tag}】"]


def handle(rng: random.Random) -> str:
    """A nickname as people pick them: words, letters, digits and underscores, never a person's name."""
    letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 7)))
    return rng.choice([
        rng.choice(NICK_WORDS) + rng.choice(["", "", "_"]) + str(rng.randint(1, 2024)),
        letters + str(rng.randint(0, 99)),
        rng.choice(NICK_WORDS) + rng.choice(NICK_WORDS),
        "-" + rng.choice(NICK_WORDS) + letters,
    ])


def link(rng: random.Random) -> str:
    return "http://t.cn/" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(7))


def _piece(rng: random.Random) -> str:
    """Something a post has between words, never part of an entity."""
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(LAUGHS)
    if kind < 0.65:
        return "".join(rng.choice(EMOTICONS) for _ in range(rng.randint(1, 3)))
    if kind < 0.8:
        return rng.choice(EMOJI) * rng.randint(1, 3)
    if kind < 0.9:
        return "@" + handle(rng) + rng.choice(["", " "])
    return "#" + rng.choice(TAGS) + "#"


def _free_cuts(record: dict) -> list[int]:
    """Where a piece can go besides an entity's edge: either end of the text, or after a punctuation mark
    (a post does not split a word, and a piece put there never lands inside an entity or another piece)."""
    text = record["text"]
    inside = {i for e in record["entities"] for i in range(e["start_offset"] + 1, e["end_offset"])}
    return [i for i in range(len(text) + 1) if i in (0, len(text)) or (text[i - 1] in PAUSES and i not in inside)]


def _insert(record: dict, at: int, piece: str) -> dict:
    """``piece`` inserted at ``at``; entities after it move with their text."""
    shift = len(piece)
    entities = [{**e, "start_offset": e["start_offset"] + shift * (e["start_offset"] >= at),
                 "end_offset": e["end_offset"] + shift * (e["start_offset"] >= at)} for e in record["entities"]]
    return {**record, "text": record["text"][:at] + piece + record["text"][at:], "entities": entities}


def _repeat_a_name(record: dict, rng: random.Random) -> dict:
    """A fan post's ``魏晨魏晨魏晨``: one person's name written two or three times over, each time a name."""
    people = [e for e in record["entities"] if e["label"] == "人名"]
    if not people:
        return record
    name = rng.choice(people)
    text = record["text"][name["start_offset"]:name["end_offset"]]
    for _ in range(rng.randint(1, 2)):
        end = name["end_offset"]
        record = _insert(record, end, text)
        name = {**name, "start_offset": end, "end_offset": end + len(text)}
        record["entities"] = [*record["entities"], name]
    return record


def dress(record: dict, rng: random.Random) -> dict:
    """``record`` (doccano: text and entities) as a post: a lead such as ``//@handle:``, pieces between its
    clauses (half of them right beside an entity, where a model must learn to stop), sometimes a name written
    over again, a sentence end dropped or shouted, a link or a topic at the end."""
    post = {**record, "entities": [dict(e) for e in record["entities"]]}
    if rng.random() < 0.25:
        post = _repeat_a_name(post, rng)
    if post["text"].endswith("。") and rng.random() < 0.5:
        post = {**post, "text": post["text"][:-1] + rng.choice(["", "！", "！！", "~"])}
    for _ in range(rng.randint(1, 3)):
        edges = sorted({e[side] for e in post["entities"] for side in ("start_offset", "end_offset")})
        at = rng.choice(edges) if edges and rng.random() < 0.5 else rng.choice(_free_cuts(post))
        post = _insert(post, at, _piece(rng))
    if rng.random() < 0.4:
        lead = rng.choice(LEADS).format(handle=handle(rng), tag=rng.choice(TAGS))
        post = _insert(post, 0, lead)
    if rng.random() < 0.4:
        post = _insert(post, len(post["text"]), rng.choice([" " + link(rng), link(rng), "#" + rng.choice(TAGS) + "#"]))
    post["entities"].sort(key=lambda e: e["start_offset"])
    return post


def dress_some(records: list[dict], fraction: float, seed: int) -> list[dict]:
    """Each record dressed as a post with probability ``fraction`` (seeded), the rest as they were."""
    rng = random.Random(seed)
    return [dress(r, rng) if rng.random() < fraction else r for r in records]
