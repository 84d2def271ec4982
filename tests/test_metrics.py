import pytest

from uie_backend.metrics import Score, score_spans, spans_from_doccano

# Two documents, worked by hand:
#   PER: gold 3, predicted 2, correct 1 -> P 1/2, R 1/3, F1 0.4
#   LOC: gold 1, predicted 2, correct 1 -> P 1/2, R 1/1, F1 2/3
#   ORG: gold 0, predicted 1, correct 0 -> all 0.0
#   micro: gold 4, predicted 5, correct 2 -> P 0.4, R 0.5, F1 4/9
GOLD = [
    [("PER", 0, 2), ("PER", 3, 5), ("LOC", 6, 8)],
    [("PER", 0, 3)],
]
PREDICTED = [
    [("PER", 0, 2), ("PER", 3, 6), ("LOC", 6, 8), ("LOC", 6, 8), ("ORG", 6, 8)],  # LOC twice counts once
    [("LOC", 0, 3)],  # right span, wrong label
]


def test_hand_computed_example():
    report = score_spans(GOLD, PREDICTED)
    assert list(report.per_label) == ["LOC", "ORG", "PER"]
    assert report.per_label["PER"] == Score(pytest.approx(1 / 2), pytest.approx(1 / 3), pytest.approx(0.4), 3, 2, 1)
    assert report.per_label["LOC"] == Score(0.5, 1.0, pytest.approx(2 / 3), 1, 2, 1)
    assert report.per_label["ORG"] == Score(0.0, 0.0, 0.0, 0, 1, 0)
    assert report.overall == Score(pytest.approx(0.4), 0.5, pytest.approx(4 / 9), 4, 5, 2)


def test_same_span_in_another_document_does_not_match():
    report = score_spans([[("PER", 0, 2)], []], [[], [("PER", 0, 2)]])
    assert report.overall.correct == 0 and report.overall.f1 == 0.0


def test_zero_division_scores_zero():
    empty = score_spans([[], []], [[], []])
    assert empty.per_label == {} and empty.overall == Score(0.0, 0.0, 0.0, 0, 0, 0)
    missed = score_spans([[("PER", 0, 1)]], [[]])
    assert missed.overall.precision == 0.0 and missed.overall.recall == 0.0


def test_spans_read_back_from_json_lists_are_accepted():
    assert score_spans([[["PER", 0, 2]]], [[("PER", 0, 2)]]).overall.f1 == 1.0


def test_document_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 gold documents but 1 predicted"):
        score_spans([[], []], [[]])


def test_to_dict_and_markdown():
    report = score_spans(GOLD, PREDICTED)
    as_dict = report.to_dict()
    assert as_dict["overall"] == {"precision": pytest.approx(0.4), "recall": 0.5, "f1": pytest.approx(4 / 9),
                                  "support": 4, "predicted": 5, "correct": 2}
    assert as_dict["per_label"]["LOC"]["support"] == 1
    lines = report.to_markdown().splitlines()
    assert lines[0] == "| label | P | R | F1 | support |"
    assert "| PER | 0.5000 | 0.3333 | 0.4000 | 3 |" in lines
    assert lines[-1] == "| **overall (micro)** | 0.4000 | 0.5000 | 0.4444 | 4 |"


def test_spans_from_doccano():
    record = {"id": 1, "text": "张三在北京", "relations": [], "entities": [
        {"id": 0, "start_offset": 0, "end_offset": 2, "label": "人名"},
        {"id": 1, "start_offset": 3, "end_offset": 5, "label": "地名"},
        {"id": 2, "start_offset": 3, "end_offset": 5, "label": "地名"},
    ]}
    assert spans_from_doccano(record) == {("人名", 0, 2), ("地名", 3, 5)}


def test_the_standard_error_of_f1_is_wide_on_a_few_spans_and_narrow_on_many():
    from uie_backend.metrics import _score, f1_standard_error

    few, many = _score(2, 2, 6), _score(800, 1000, 1000)  # F1 0.5 on six spans; 0.8 on a thousand
    assert 0.15 < f1_standard_error(few) < 0.3 and f1_standard_error(many) < 0.015
    assert f1_standard_error(_score(2, 2, 2)) > 0.2  # perfect on two spans is not certain
    assert f1_standard_error(_score(0, 0, 0)) == 0.0
