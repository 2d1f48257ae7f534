"""Readers on good input (hand-written files) and on malformed input (errors name file and record)."""

import json

import pytest

from workflow_scripts.data import readers
from workflow_scripts.data.readers import DataFormatError


def test_cc3m_tsv(tmp_path):
    good = tmp_path / "cc3m.tsv"
    good.write_text("caption\turl\na red circle\thttp://x/1.jpg\nblue star\tfile:///tmp/2.jpg\n")
    rows = readers.read_cc3m_tsv(good)
    assert rows == [readers.CaptionUrl(0, "a red circle", "http://x/1.jpg", 2),
                    readers.CaptionUrl(1, "blue star", "file:///tmp/2.jpg", 3)]


def test_cc3m_tsv_as_google_ships_it(tmp_path):
    """Train_GCC-training.tsv has no header: line 1 is GCC_train_0 (captions are lower-case, pre-tokenised)."""
    google = tmp_path / "Train_GCC-training.tsv"
    google.write_text("a very typical bus station\thttp://lh6.ggpht.com/-IvRtNLNcG8o/TpFyrudaT6I/AAAAAAAAM6o/"
                      "_mmAxxlzfLA/s640/bus-station.jpg\nsierra looked stunning in this top and this skirt while "
                      "performing with person at their former university\thttp://78.media.tumblr.com/x/tumblr.jpg\n")
    rows = readers.read_cc3m_tsv(google)
    assert [(r.row, r.line) for r in rows] == [(0, 1), (1, 2)]
    assert rows[0].caption == "a very typical bus station" and rows[1].url.endswith("tumblr.jpg")
    bad = tmp_path / "bad.tsv"
    bad.write_text("ok\thttp://x\nno url here\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv: line 2"):
        readers.read_cc3m_tsv(bad)


def test_cc3m_tsv_errors(tmp_path):
    short = tmp_path / "short.tsv"
    short.write_text("caption\turl\nok\thttp://x\nno url here\n")
    with pytest.raises(DataFormatError, match=r"short\.tsv: line 3"):
        readers.read_cc3m_tsv(short)


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_llava_json(tmp_path):
    good = _write(tmp_path, "ok.json", [{"id": "1", "image": "000000000001.jpg", "conversations": [
        {"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}])
    (rec,) = readers.read_llava_json(good)
    assert rec.conversations == (("human", "<image>\nQ"), ("gpt", "A")) and rec.type is None
    no_answer = _write(tmp_path, "noans.json", [{"id": "x7", "conversations": [{"from": "human", "value": "Q"}]}])
    with pytest.raises(DataFormatError, match=r"noans\.json: record 0 \(id 'x7'\): no assistant"):
        readers.read_llava_json(no_answer)
    bad_role = _write(tmp_path, "role.json", [{"id": "a", "conversations": [{"from": "bot", "value": "A"}]}])
    with pytest.raises(DataFormatError, match="record 0"):
        readers.read_llava_json(bad_role)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,\n "conversations": ]')
    with pytest.raises(DataFormatError, match=r"broken\.json: line 2"):
        readers.read_llava_json(broken)


def test_karpathy(tmp_path):
    data = {"images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "split": "test",
         "sentences": [{"raw": "A cat."}, {"raw": "A dog."}]},
        {"filename": "9.jpg", "imgid": 1, "split": "train", "sentences": [{"raw": "x"}]}]}
    path = _write(tmp_path, "dataset_coco.json", data)
    (test,) = readers.read_karpathy(path, "test")
    assert test == readers.KarpathyImage(42, "val2014/COCO_val2014_000000000042.jpg", "test", ("A cat.", "A dog."))
    assert readers.read_karpathy(path, "train")[0].path == "9.jpg"
    data["images"][1]["sentences"] = [{"raw": ""}]
    with pytest.raises(DataFormatError, match=r"images\[1\]"):
        readers.read_karpathy(_write(tmp_path, "bad.json", data))


def test_vqav2(tmp_path):
    qs = _write(tmp_path, "q.json", {"questions": [{"question_id": 5, "image_id": 3, "question": "What?"}]})
    ans = [{"answer": "red"}] * 9 + [{"answer": "blue"}]
    an = _write(tmp_path, "a.json", {"annotations": [{"question_id": 5, "answers": ans, "answer_type": "other",
                                                      "multiple_choice_answer": "red"}]})
    (q,) = readers.read_vqav2(qs, an)
    assert q.answers.count("red") == 9 and q.multiple_choice_answer == "red"
    missing = _write(tmp_path, "a2.json", {"annotations": []})
    with pytest.raises(DataFormatError, match="question_id 5"):
        readers.read_vqav2(qs, missing)


def test_vqav2_real_annotation_record_is_scored_per_question_type(tmp_path):
    """An annotation as v2_mscoco_val2014_annotations.json holds it (question_type, answer_type, ten answers with
    answer_confidence and answer_id, image_id): score_file groups it under its question_type, as vqaEval's
    perQuestionType does."""
    from workflow_scripts.evaluate import vqav2
    from workflow_scripts.evaluate.common import Answer

    qs = _write(tmp_path, "q.json", {"questions": [
        {"image_id": 262148, "question": "What color is the plate?", "question_id": 262148000},
        {"image_id": 262148, "question": "How many people?", "question_id": 262148001}]})
    def record(qid, qtype, atype, answer):
        return {"question_type": qtype, "multiple_choice_answer": answer, "answer_type": atype,
                "image_id": 262148, "question_id": qid,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]}
    an = _write(tmp_path, "a.json", {"info": {}, "license": {}, "data_subtype": "val2014", "data_type": "mscoco",
                                      "annotations": [record(262148000, "what color is the", "other", "white"),
                                                      record(262148001, "how many", "number", "2")]})
    assert [q.question_type for q in readers.read_vqav2(qs, an)] == ["what color is the", "how many"]
    out = vqav2.score_file([Answer("262148000", " white "), Answer("262148001", "3")], qs, an)
    assert out["by_question_type"] == {"how many": {"accuracy": 0.0, "questions": 1},
                                       "what color is the": {"accuracy": 100.0, "questions": 1}}


def test_mme_both_layouts_and_bad_line(tmp_path):
    (tmp_path / "count/images").mkdir(parents=True)
    (tmp_path / "count/questions_answers_YN").mkdir()
    (tmp_path / "count/images/1.jpg").write_bytes(b"")
    (tmp_path / "count/questions_answers_YN/1.txt").write_text("Is there one? Please answer yes or no.\tYes\n"
                                                                "Are there two? Please answer yes or no.\tNo\n")
    (tmp_path / "OCR").mkdir()
    (tmp_path / "OCR/7.png").write_bytes(b"")
    (tmp_path / "OCR/7.txt").write_text("Is it a word?\tNo\n")
    got = readers.read_mme(tmp_path)
    assert [(q.subtask, q.answer) for q in got] == [("OCR", "No"), ("count", "Yes"), ("count", "No")]
    (tmp_path / "OCR/7.txt").write_text("Is it a word?\tMaybe\n")
    with pytest.raises(DataFormatError, match=r"7\.txt: line 1"):
        readers.read_mme(tmp_path)


def test_pope(tmp_path):
    path = tmp_path / "coco_pope_random.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\n'
                    '{"question_id": 2, "image": "a.jpg", "text": "Is there a cat?", "label": "no"}\n')
    assert [q.label for q in readers.read_pope(path)] == ["yes", "no"]
    path.write_text(path.read_text() + '{"question_id": 3, "image": "a.jpg"\n')
    with pytest.raises(DataFormatError, match=r"coco_pope_random\.json: line 3"):
        readers.read_pope(path)
