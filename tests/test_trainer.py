"""Encoding answers onto UIE's pointers and decoding pointers back to character spans."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from uie_backend import paddle_env
from uie_backend.checkpoint import VOCAB_DIR
from uie_backend.trainer import decode_spans, encode, split_long_examples


@pytest.fixture(scope="module")
def tokenizer():
    paddle_env.load()
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(VOCAB_DIR))


def test_encode_puts_pointers_on_the_right_tokens_after_astral_characters_and_spaces(tokenizer):
    content = "😀张三 买了Mate 60。\r\n𠀀好"
    spans = [{"text": "张三", "start": 1, "end": 3}, {"text": "Mate 60", "start": 6, "end": 13}]
    e = encode({"content": content, "prompt": "产品", "result_list": spans}, tokenizer, 64)
    starts = [e.offsets[i] for i, v in enumerate(e.start_labels) if v]
    ends = [e.offsets[i] for i, v in enumerate(e.end_labels) if v]
    assert [s for s, _ in starts] == [1, 6] and [t for _, t in ends] == [3, 13]
    assert e.gold == {("产品", 1, 3), ("产品", 6, 13)}


def test_decode_gives_each_start_its_most_probable_end_before_the_next_start():
    content = "周恩来和李四"
    offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (0, 0)]
    start_prob = [0, 0.9, 0, 0, 0, 0.8, 0, 0]
    end_prob = [0, 0, 0.6, 0.9, 0, 0, 0.7, 0]  # unsure whether the name ends at 恩 or at 来
    spans = decode_spans(start_prob, end_prob, offsets, content, 0.5)
    assert [content[s:e] for s, e, _ in spans] == ["周恩来", "李四"]  # Taskflow's pairing says "周恩"
    assert spans[0][2] == pytest.approx(0.81)
    assert decode_spans([0, 0.9, 0, 0], [0, 0.9, 0, 0], offsets[:4], content, 0.5) == [(0, 1, pytest.approx(0.81))]


def test_decode_pairs_starts_and_ends_and_trims_whitespace():
    content = " ab cd\r\n𠀀x"
    offsets = [(0, 0), (0, 2), (2, 3), (3, 5), (5, 6), (6, 9), (9, 10), (0, 0)]
    start_prob = [0, 0.9, 0, 0.8, 0, 0.7, 0, 0]
    end_prob = [0, 0, 0.9, 0, 0.6, 0, 0.9, 0]
    spans = decode_spans(start_prob, end_prob, offsets, content, 0.5)
    # tokens " a" and " c" carry the space before them; the [UNK] token of 𠀀 swallowed the "\r\n"
    assert [(s, e) for s, e, _ in spans] == [(1, 3), (4, 6), (8, 10)]
    assert [content[s:e] for s, e, _ in spans] == ["ab", "cd", "𠀀x"]
    assert spans[0][2] == pytest.approx(0.81)


def test_decode_ignores_pointers_on_prompt_and_special_tokens():
    assert decode_spans([0.9, 0.9], [0.9, 0.9], [(0, 0), (0, 0)], "ab", 0.5) == []


def test_long_contents_are_cut_into_windows_keeping_only_spans_inside_them():
    content = "甲" * 50 + "张三" + "乙" * 8 + "李四"
    example = {"content": content, "prompt": "人名",
               "result_list": [{"text": "张三", "start": 50, "end": 52}, {"text": "李四", "start": 60, "end": 62}]}
    windows = split_long_examples([example], max_seq_len=56)  # 56 - 2 - 3 = 51 characters a window
    assert [len(w["content"]) for w in windows] == [51, 11]
    assert windows[0]["result_list"] == []  # 张三 crosses the edge at 51
    assert windows[1]["result_list"] == [{"text": "李四", "start": 9, "end": 11}]
    with pytest.raises(ValueError, match="does not fit"):
        split_long_examples([example], max_seq_len=4)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_state(tmp_path, random_checkpoint):
    from uie_backend import checkpoint, trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano
    import corpus

    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(20, seed=1)), negative_ratio=1)
    config = trainer.TrainConfig(init_from=random_checkpoint, save_dir=tmp_path, learning_rate=1e-3, batch_size=8,
                                 max_seq_len=64, max_steps=120, eval_every=40, device="cpu", state_every_s=0.01,
                                 positive_weight=5.0, resume=True)
    seen = []

    def stop_at_70(progress):
        seen.append(progress.step)
        if progress.step == 70:
            raise Interrupted

    with pytest.raises(Interrupted):
        trainer.train(config, examples, examples, on_progress=stop_at_70)
    assert (tmp_path / "last" / "progress.json").exists()
    resumed = []
    result = trainer.train(config, examples, examples, on_progress=lambda p: resumed.append((p.step, p.epoch)))
    assert resumed[0][0] in (70, 71) and result.steps == 120  # continued where it stopped, not from 0
    assert resumed[-1][1] == -(-120 // -(-len(examples) // 8))  # epochs counted across the interruption

    # and it ends exactly where an unbroken run ends, reporting the whole run as that one does
    unbroken = trainer.train(replace(config, save_dir=tmp_path / "unbroken"), examples, examples)
    assert [point["step"] for point in result.history] == [40, 80, 120]
    assert result.history == unbroken.history
    assert result.initial_report.to_dict() == unbroken.initial_report.to_dict()
    assert result.best_epochs == unbroken.best_epochs > 0
    assert result.version == checkpoint.read_meta(tmp_path / "model_best")["version"]
    paddle = paddle_env.load().paddle
    weights = [paddle.load(str(run / "last" / "model_state.pdparams")) for run in (tmp_path, tmp_path / "unbroken")]
    assert all(np.array_equal(weights[0][name].numpy(), weights[1][name].numpy()) for name in weights[1])


def test_a_run_records_its_mean_loss_and_dev_f1_at_each_evaluation(tmp_path, random_checkpoint):
    """report.json's "history", the status page's learning curve."""
    from uie_backend import trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano
    import corpus

    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(4, seed=1)), negative_ratio=1)
    config = trainer.TrainConfig(init_from=random_checkpoint, save_dir=tmp_path, learning_rate=1e-3, batch_size=4,
                                 max_seq_len=64, max_steps=6, eval_every=2, device="cpu")
    losses, f1s = [], []
    result = trainer.train(config, examples, examples[:4],
                           on_progress=lambda p: (losses.append(p.loss), f1s.append(p.last_f1)))
    steps_per_epoch = -(-len(examples) // 4)
    assert [h["step"] for h in result.history] == [2, 4, 6]
    assert [h["epoch"] for h in result.history] == [round(s / steps_per_epoch, 2) for s in (2, 4, 6)]
    assert [h["loss"] for h in result.history] == pytest.approx([sum(losses[i:i + 2]) / 2 for i in (0, 2, 4)])
    assert [h["dev_f1"] for h in result.history] == [f1s[1], f1s[3], f1s[5]]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("张三北京的。，Mate60 abcÄé\r\n😀𠀀🀄\u3000")), max_size=80),
       st.sampled_from(["人名", "地名", "产品", "天气"]), st.integers(8, 64))
def test_encoding_matches_the_tokenizers_own_pair_encoding(content, prompt, max_seq_len):
    """encode() assembles [CLS] prompt [SEP] content [SEP] itself (to tokenise a text once for all its
    prompts); it must give exactly what the tokenizer gives for the pair."""
    tok = _shared_tokenizer()
    reference = tok(text=prompt, text_pair=content, max_length=max_seq_len, truncation=True)
    encoded = encode({"content": content, "prompt": prompt, "result_list": []}, tok, max_seq_len)
    assert encoded.input_ids == reference["input_ids"]
    assert encoded.token_type_ids == reference["token_type_ids"]


@lru_cache(maxsize=1)
def _shared_tokenizer():
    paddle_env.load()
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(VOCAB_DIR))


def test_the_static_export_is_redone_when_the_weights_change(tmp_path, random_checkpoint):
    import os
    import shutil

    from uie_backend.inference import export_static

    model = tmp_path / "model"
    shutil.copytree(random_checkpoint, model)
    exported = export_static(model).with_suffix(".pdiparams")
    first = exported.stat().st_mtime
    weights = model / "model_state.pdparams"
    os.utime(weights, (first + 10, first + 10))  # new weights (a checkpoint replaced in place, a git pull)
    assert export_static(model).with_suffix(".pdiparams").stat().st_mtime > first


def test_a_folded_threshold_finds_at_0_5_exactly_what_the_model_found_at_that_threshold(random_checkpoint):
    from uie_backend import checkpoint, trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano
    import corpus

    paddle_env.set_device("cpu")
    model, tokenizer = checkpoint.load(random_checkpoint)
    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(12, seed=4)), negative_ratio=1)
    items = [encode(e, tokenizer, 64) for e in examples]
    model.eval()
    start_prob, end_prob = trainer.dygraph_forward(model)(items)
    threshold = float(np.quantile(np.concatenate([start_prob, end_prob]), 0.6))  # a random model finds spans here

    def spans_at(threshold: float) -> list[list[tuple[int, int]]]:
        return [[(s, e) for s, e, _ in spans] for spans in
                trainer.predict_encoded(trainer.dygraph_forward(model), items, 8, threshold)]

    before, unfolded_at_half = spans_at(threshold), spans_at(0.5)
    trainer.fold_threshold(model, threshold)
    assert sum(map(len, before)) > 0 and before != unfolded_at_half  # the threshold matters here
    assert spans_at(0.5) == before
    reports = trainer.evaluate_at(model, items, [0.4, 0.5])  # one forward pass, one report per threshold
    assert reports[0.5].to_dict() == trainer.evaluate(model, items).to_dict()


def test_batches_drawn_from_a_length_pool_hold_similar_lengths_and_every_example_once():
    import random

    from uie_backend.trainer import Encoded, _batches

    items = [Encoded([0] * length, [], [], [], [], "", "", set()) for length in random.Random(0).choices(range(5, 129), k=640)]
    pooled = _batches(items, 32, random.Random(1), pool=10)
    shuffled = _batches(items, 32, random.Random(1), pool=1)

    def padded(batches):
        return sum(32 * max(len(e.input_ids) for e in batch) for batch in batches)

    assert sorted(map(id, (e for b in pooled for e in b))) == sorted(map(id, items))
    assert padded(pooled) < 0.7 * padded(shuffled)  # shuffled batches are padded to near the longest (128)
    assert [len(b[0].input_ids) for b in pooled] != sorted(len(b[0].input_ids) for b in pooled)  # not length order
    assert [[id(e) for e in b] for b in pooled] == [[id(e) for e in b] for b in _batches(items, 32, random.Random(1), 10)]


def test_a_later_checkpoint_within_noise_of_the_best_is_kept_in_its_place_and_a_clearly_worse_one_is_not():
    """Start Training's refit trains for as many epochs as the kept checkpoint had: on a dev split of six spans,
    an early 0.5 (one span more) must not cut the annotated tasks' training short. On a thousand spans the same
    rule keeps the best, and early stopping still counts from the best."""
    from uie_backend import trainer
    from uie_backend.metrics import SpanReport, _score

    def kept_steps(scores: list[tuple[int, int, int]], slack_se: float) -> tuple[list[int], int]:
        run, kept = trainer._RunRecord(trainer.Progress(), None), []
        for step, counts in enumerate(scores, start=1):
            run.progress.step = step
            if trainer._judge(run, SpanReport({}, _score(*counts)), slack_se)[1]:
                kept.append(step)
        return kept, run.stale_evals

    few = [(1, 2, 6), (2, 2, 6), (2, 4, 6), (2, 3, 6), (1, 8, 6)]  # F1 0.25, 0.5, 0.4, 0.44, 0.14
    assert kept_steps(few, 0.0) == ([1, 2], 3)
    assert kept_steps(few, 1.0) == ([1, 2, 3, 4], 3)  # not the last: 0.14 is worse beyond noise
    many = [(700, 1000, 1000), (800, 1000, 1000), (790, 1000, 1000)]  # F1 0.7, 0.8, 0.79: 0.79 within noise
    assert kept_steps(many, 1.0) == ([1, 2, 3], 1)
    assert kept_steps([(700, 1000, 1000), (800, 1000, 1000), (770, 1000, 1000)], 1.0) == ([1, 2], 1)


def test_a_checkpoint_can_be_judged_at_its_best_pointer_threshold(tmp_path, trained_checkpoint):
    """A recipe folds the best threshold into the model it ships, so it keeps checkpoints by their score there.
    A good model shifted to over-predict at 0.5 (what positive weighting does) is worth more at 0.9."""
    from uie_backend import checkpoint, trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano
    import corpus

    model, tokenizer = checkpoint.load(trained_checkpoint)
    trainer.fold_threshold(model, 0.003)  # > 0.5 now means what > 0.003 meant (> 0.9: > 0.03)
    checkpoint.save(model, tokenizer, tmp_path / "eager", {})
    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(12, seed=3)), negative_ratio=1)
    config = trainer.TrainConfig(init_from=tmp_path / "eager", save_dir=tmp_path, learning_rate=1e-9, batch_size=8,
                                 max_seq_len=64, max_steps=2, eval_every=1, device="cpu", select_thresholds=(0.9,))
    result = trainer.train(config, examples, examples)
    model, tokenizer = checkpoint.load(tmp_path / "model_best")
    kept = trainer.evaluate_at(model, [trainer.encode(e, tokenizer, 64) for e in examples], (0.5, 0.9))
    assert kept[0.9].overall.f1 > kept[0.5].overall.f1
    assert checkpoint.read_meta(tmp_path / "model_best")["dev_threshold"] == 0.9
    assert result.best_report.overall.f1 == pytest.approx(kept[0.9].overall.f1)


def test_a_resumed_run_knows_the_best_checkpoint_saved_after_its_last_timed_state(tmp_path, trained_checkpoint):
    """Stopped between a new best and the next timed state save, a run must not come back believing an older
    best: it would overwrite model_best with any worse checkpoint that beats that."""
    from uie_backend import checkpoint, trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano
    import corpus

    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(8, seed=1)), negative_ratio=1)
    config = trainer.TrainConfig(init_from=trained_checkpoint, save_dir=tmp_path, learning_rate=1e-5, batch_size=8,
                                 max_seq_len=64, max_steps=30, eval_every=10, device="cpu", state_every_s=3600,
                                 resume=True)

    def stop_after_first_evaluation(progress):
        if progress.step == 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        trainer.train(config, examples, examples, on_progress=stop_after_first_evaluation)
    best = checkpoint.read_meta(tmp_path / "model_best")["dev"]["overall"]["f1"]
    assert best > 0.5
    resumed = []
    trainer.train(config, examples, examples, on_progress=lambda p: resumed.append((p.step, p.best_f1)))
    assert resumed[0] == (11, pytest.approx(best))
