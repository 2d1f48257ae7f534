"""Scoring functions against hand-computed vectors (the official tools' rules)."""

import pytest

from workflow_scripts.evaluate import captioning, mme, pope, vqav2
from workflow_scripts.evaluate.common import CoverageError


@pytest.mark.parametrize("pred, answers, expected", [
    ("2", ["2"] * 10, 1.0),
    ("two", ["2"] * 10, 0.0),                         # all humans agree: no normalisation at all
    ("Yes", ["yes"] * 10, 0.0),                       # ... not even lower-casing
    (" yes\n", ["yes"] * 10, 1.0),                    # but newlines and outer spaces are stripped
    ("two", ["2"] * 9 + ["3"], 1.0),                  # disagreement: number words become digits
    ("Two.", ["2"] * 9 + ["3"], 1.0),                 # period dropped, lower case
    ("3", ["2"] * 9 + ["3"], 0.0),                    # 1 match: in the 9 subsets that keep it 1/3 ... see below
    ("the red", ["red"] * 8 + ["blue", "green"], 1.0),  # article dropped
    ("dont know", ["don't know"] * 5 + ["no"] * 5, 1.0),  # contraction restored
    ("yes!", ["yes"] * 9 + ["no"], 1.0),              # '!' not touching a space: replaced by a space, stripped
    ("red, blue", ["red blue"] * 4 + ["x"] * 6, 1.0),  # ', ' touches a space: deleted
    ("1,000", ["1000"] * 4 + ["x"] * 6, 1.0),         # digit,digit: commas deleted
])
def test_vqa_accuracy(pred, answers, expected):
    if pred == "3":
        # "3" matches one human answer: 9 leave-one-out subsets still contain it (1/3 each), 1 does not (0).
        expected = 9 * (1 / 3) / 10
    assert vqav2.accuracy(pred, answers) == pytest.approx(expected)


def test_vqa_partial_agreement_steps():
    for matches, expected in [(1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)]:
        answers = ["cat"] * matches + ["dog"] * (10 - matches)
        assert vqav2.accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_score_by_type_and_missing():
    refs = {"1": (["yes"] * 10, "yes/no"), "2": (["2"] * 10, "number"), "3": (["3"] * 10, "number")}
    out = vqav2.score({"1": "yes", "2": "2", "3": "4"}, refs)
    assert out["accuracy"] == pytest.approx(200 / 3) and out["by_answer_type"] == {"number": 50.0, "yes/no": 100.0}
    with pytest.raises(CoverageError, match=r"vqav2: 1 of 3 answered; first missing: '2'"):
        vqav2.score({"1": "yes"}, refs)
    partial = vqav2.score({"1": "yes"}, refs, allow_partial=True)  # the answered part, and how much it is
    assert partial["accuracy"] == 100.0 and partial["coverage"] == {"answered": 1, "references": 3,
                                                                    "unmatched_answers": 0}
    with pytest.raises(CoverageError, match=r"0 of 3 references answered.*'coco_1'"):
        vqav2.score({"coco_1": "yes"}, refs, allow_partial=True)  # zero matches: always an error


def test_vqa_score_per_question_type_when_refs_carry_it():
    """Real annotations carry a question_type ("what color is the"): scored per type as vqaEval's perQuestionType.
    Hand-checked: colour 1 of 2 right (50), count 1 of 1 (100); a question without a type is in no group."""
    refs = {"1": (["red"] * 10, "other", "what color is the"), "2": (["blue"] * 10, "other", "what color is the"),
            "3": (["2"] * 10, "number", "how many"), "4": (["yes"] * 10, "yes/no", "")}
    out = vqav2.score({"1": "red", "2": "green", "3": "2", "4": "no"}, refs)
    assert out["by_question_type"] == {"how many": {"accuracy": 100.0, "questions": 1},
                                       "what color is the": {"accuracy": 50.0, "questions": 2}}
    assert out["accuracy"] == 50.0 and out["by_answer_type"] == {"number": 100.0, "other": 50.0, "yes/no": 0.0}
    assert "by_question_type" not in vqav2.score({"1": "red"}, {"1": (["red"] * 10, "other")})


def test_vqa_period_strip_as_the_official_tool_counts():
    """vqaEval.py passes re.UNICODE (32) as the count of periodStrip.sub: at most 32 periods go."""
    answers = ["yes"] * 9 + ["no"]  # humans disagree: the prediction is normalised
    assert vqav2.accuracy("yes" + "." * 32, answers) == pytest.approx(1.0)
    assert vqav2.accuracy("yes" + "." * 33, answers) == 0.0  # one period is left: "yes."


@pytest.mark.parametrize("text, parsed", [
    ("Yes", "yes"), ("no", "no"), ("Yes, there is", "yes"), ("No.", "no"), ("", "other"),
    ("There is a cat", "other"), ("not sure", "no"),  # "no" within the first 4 characters ("not ")
    ("  yes", "other"), (" no", "no"),  # the raw text: "  ye" holds neither; " no" holds "no" in 4 characters
])
def test_mme_parse(text, parsed):
    assert mme.parse(text) == parsed


def test_mme_score_acc_plus_and_sums():
    refs = {"count/1/yes": ("count", "1", "yes"), "count/1/no": ("count", "1", "no"),
            "count/2/yes": ("count", "2", "yes"), "count/2/no": ("count", "2", "no"),
            "landmark/4/yes": ("landmark", "4", "yes"), "landmark/4/no": ("landmark", "4", "no"),
            "numerical_calculation/3/yes": ("numerical_calculation", "3", "yes"),
            "numerical_calculation/3/no": ("numerical_calculation", "3", "no")}
    parsed = {"count/1/yes": "yes", "count/1/no": "no", "count/2/yes": "yes", "count/2/no": "yes",
              "landmark/4/yes": "yes", "landmark/4/no": "no",
              "numerical_calculation/3/yes": "other", "numerical_calculation/3/no": "yes"}
    out = mme.score(parsed, refs)
    assert out["subtasks"]["count"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0, "questions": 4}
    assert out["subtasks"]["numerical_calculation"]["score"] == 0.0
    assert out["perception"] == 325.0 and out["perception_8"] == 125.0 and out["cognition"] == 0.0
    del parsed["numerical_calculation/3/no"]
    with pytest.raises(CoverageError, match=r"mme: 7 of 8 answered; first missing: 'numerical_calculation/3/no'"):
        mme.score(parsed, refs)


@pytest.mark.parametrize("text, parsed", [
    ("Yes, there is a dog.", "yes"), ("No.", "no"), ("There is not a dog in the image.", "no"),
    ("Yes. No dog is visible.", "yes"),  # only the first sentence counts
    ("no, I do not see one", "no"), ("", "yes"), ("Nope", "yes"),
])
def test_pope_parse(text, parsed):
    assert pope.parse(text) == parsed


def test_pope_metrics_by_hand():
    # predictions vs truth: TP=2, FP=1, FN=1, TN=4
    pairs = [("yes", "yes")] * 2 + [("yes", "no")] + [("no", "yes")] + [("no", "no")] * 4
    m = pope.binary_metrics(pairs)
    assert m["accuracy"] == pytest.approx(75.0)
    assert m["precision"] == pytest.approx(200 / 3) and m["recall"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx(200 / 3) and m["yes_ratio"] == pytest.approx(37.5)
    refs = {f"random/{i}": ("random", t, f"{i // 2}.jpg") for i, (_, t) in enumerate(pairs)}
    refs.update({f"popular/{i}": ("popular", t, f"{i // 2}.jpg") for i, (_, t) in enumerate(pairs)})
    parsed = {f"random/{i}": p for i, (p, _) in enumerate(pairs)}
    parsed.update({f"popular/{i}": t for i, (_, t) in enumerate(pairs)})  # popular: all right
    out = pope.score(parsed, refs)
    assert out["f1_mean"] == pytest.approx((200 / 3 + 100) / 2)
    assert out["accuracy_mean"] == pytest.approx((75 + 100) / 2)
    with pytest.raises(CoverageError, match=r"0 of 16 references answered.*--questions"):
        pope.score({"3": "yes"}, refs)  # LLaVA's global ids without its question file


def test_pope_counts_images_whose_questions_all_got_one_answer():
    # Image a: present circle, absent star, both "yes" (blind to the question). Image b: present square "yes",
    # absent cross "no" (reads it). Image c: both "no" (blind). Image d: only present objects (not counted).
    refs = {"random/1": ("random", "yes", "a"), "random/2": ("random", "no", "a"),
            "random/3": ("random", "yes", "b"), "random/4": ("random", "no", "b"),
            "random/5": ("random", "yes", "c"), "random/6": ("random", "no", "c"),
            "random/7": ("random", "yes", "d"), "random/8": ("random", "yes", "d")}
    parsed = {"random/1": "yes", "random/2": "yes", "random/3": "yes", "random/4": "no", "random/5": "no",
              "random/6": "no", "random/7": "yes", "random/8": "no"}
    split = pope.score(parsed, refs)["splits"]["random"]
    assert split["images"] == 3 and split["question_blind"] == pytest.approx(200 / 3)
    assert split["accuracy"] == pytest.approx(62.5)
    assert pope.question_blind_images({}, refs) == {"images": 0, "question_blind": None}


@pytest.mark.slow
def test_captioning_cider_identical_beats_different():
    refs = {"1": ["a red circle at the top left", "a red circle in the top left corner"],
            "2": ["a blue star and a green square", "two shapes a blue star and a green square"],
            "3": ["an orange diamond", "a small orange diamond on white"]}
    perfect = captioning.score({"1": "a red circle at the top left", "2": "a blue star and a green square",
                                "3": "an orange diamond"}, refs)
    wrong = captioning.score({"1": "a yellow cross", "2": "a purple triangle", "3": "nothing"}, refs)
    assert perfect["CIDEr"] > 100 and wrong["CIDEr"] < 5
    assert perfect["BLEU-4"] > wrong["BLEU-4"] and perfect["ROUGE-L"] > wrong["ROUGE-L"]
    assert set(perfect) == {"CIDEr", "BLEU-4", "METEOR", "ROUGE-L", "images", "coverage"}
    with pytest.raises(CoverageError, match=r"captioning: 2 of 3 answered; first missing: '3'"):
        captioning.score({"1": "a red circle", "2": "a star"}, refs, extras=())
    assert captioning.parse("\n A red circle.\nSecond line") == "A red circle."


def test_vqa_sibling_protocol_draws_pool_then_evaluated_questions():
    """The authors' protocol by hand: numpy seed -> choice(n, pool + subset) without replacement; pool first."""
    import random

    import numpy as np

    from workflow_scripts.data.readers import VQAQuestion

    questions = [VQAQuestion(100 + i, i, f"q{i}? ", (f"a{i} ", "x"), "other", f"a{i}") for i in range(20)]
    selected = vqav2.sibling_selection(questions, subset_size=5, pool_size=4, shots=3, seed=42)
    order = np.random.RandomState(42).choice(20, 9, replace=False)
    np.random.seed(42)  # the sibling code's global-generator call draws the same indices
    assert list(np.random.choice(20, 9, replace=False)) == list(order)
    assert [q.question_id for q, _ in selected] == [100 + int(i) for i in order[4:]]
    pool_ids = {int(i) for i in order[:4]}
    draw = random.Random(42)
    pool = [questions[int(i)] for i in order[:4]]
    for _, demos in selected:
        expected = draw.sample(pool, 3)
        assert demos == [(d.question.strip(), d.answers[0].strip()) for d in expected]
        assert {int(d[0][1:-1]) for d in demos} <= pool_ids  # demonstrations only from the pool
    with pytest.raises(ValueError, match="4 \\+ 30 questions needed, 20"):
        vqav2.sibling_selection(questions, subset_size=30, pool_size=4, shots=3, seed=42)
