"""Readers for every dataset format of the study. Each returns typed records; a malformed file raises
``DataFormatError`` naming the file and the line or record, before any expensive work starts.

The same readers read the real downloads and the toy world's files.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path


class DataFormatError(ValueError):
    """A dataset file that does not have the expected format; the message names the file and the record."""

    def __init__(self, path, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}")
        self.path, self.where, self.problem = str(path), where, problem


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"line {e.lineno} column {e.colno}", f"not valid JSON ({e.msg})") from None


def _need(path, where: str, record: dict, keys: tuple[str, ...]) -> None:
    if not isinstance(record, dict):
        raise DataFormatError(path, where, f"expected an object, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataFormatError(path, where, f"missing key(s) {missing}")


@dataclass(frozen=True)
class CaptionUrl:
    row: int  # 0-based data row (CC3M ids are row numbers: GCC_train_<row>)
    caption: str
    url: str
    line: int = 0  # 1-based line in the file (for error messages)


def read_cc3m_tsv(path) -> list[CaptionUrl]:
    """CC3M tsv: ``caption<TAB>url`` per line. Google's ``Train_GCC-training.tsv`` has no header (row 0 is
    GCC_train_0); a first line ``caption<TAB>url`` (img2dataset's style) is read as a header and skipped."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows, first = [], True
        for line, fields in enumerate(reader, 1):
            if first and [h.strip().lower() for h in fields[:2]] == ["caption", "url"]:
                first = False
                continue
            first = False
            if len(fields) != 2 or not fields[1].strip():
                raise DataFormatError(path, f"line {line}", f"expected 'caption<TAB>url', got {len(fields)} fields")
            rows.append(CaptionUrl(len(rows), fields[0], fields[1], line))
    if not rows:
        raise DataFormatError(path, "file", "no caption<TAB>url rows")
    return rows


@dataclass(frozen=True)
class InstructRecord:
    id: str
    image: str | None
    conversations: tuple[tuple[str, str], ...]  # (from, value), from in {"human", "gpt"}
    type: str | None = None


def read_llava_json(path) -> list[InstructRecord]:
    """LLaVA instruct/pretrain json: a list of {id, image?, conversations: [{from, value}, ...], type?}."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, "top level", "expected a JSON list of records")
    records = []
    for i, r in enumerate(data):
        where = f"record {i} (id {r.get('id', '?')!r})" if isinstance(r, dict) else f"record {i}"
        _need(path, where, r, ("id", "conversations"))
        turns = r["conversations"]
        if not isinstance(turns, list) or not turns:
            raise DataFormatError(path, where, "conversations must be a non-empty list")
        pairs = []
        for t in turns:
            if not isinstance(t, dict) or t.get("from") not in ("human", "gpt") or not isinstance(t.get("value"), str):
                raise DataFormatError(path, where, f"turn {t!r} must be {{from: human|gpt, value: str}}")
            pairs.append((t["from"], t["value"]))
        if not any(f == "gpt" for f, _ in pairs):
            raise DataFormatError(path, where, "no assistant ('gpt') turn to learn from")
        records.append(InstructRecord(str(r["id"]), r.get("image"), tuple(pairs), r.get("type")))
    return records


@dataclass(frozen=True)
class KarpathyImage:
    image_id: int  # cocoid for COCO, imgid otherwise
    path: str  # relative to the image folder: filepath/filename (COCO) or filename
    split: str
    captions: tuple[str, ...]


def read_karpathy(path, split: str | None = None) -> list[KarpathyImage]:
    """Karpathy split json (dataset_coco.json / dataset_flickr30k.json); ``split`` filters (train/val/test)."""
    data = _load_json(path)
    _need(path, "top level", data, ("images",))
    out = []
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        _need(path, where, im, ("filename", "split", "sentences"))
        raws = [s.get("raw") for s in im["sentences"] if isinstance(s, dict)]
        if not raws or not all(isinstance(r, str) and r.strip() for r in raws):
            raise DataFormatError(path, where, "every image needs sentences with a non-empty 'raw' caption")
        rel = os.path.join(im["filepath"], im["filename"]) if im.get("filepath") else im["filename"]
        if split is None or im["split"] == split:
            out.append(KarpathyImage(int(im.get("cocoid", im.get("imgid", i))), rel, im["split"], tuple(raws)))
    return out


@dataclass(frozen=True)
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    answers: tuple[str, ...]  # the 10 human answers
    answer_type: str
    multiple_choice_answer: str
    question_type: str = ""  # the annotation's first words class ("what color is the"), for the no-image guess


def read_vqav2(questions_path, annotations_path) -> list[VQAQuestion]:
    """VQAv2 ``v2_OpenEnded_mscoco_*_questions.json`` joined with ``v2_mscoco_*_annotations.json``."""
    qs, anns = _load_json(questions_path), _load_json(annotations_path)
    _need(questions_path, "top level", qs, ("questions",))
    _need(annotations_path, "top level", anns, ("annotations",))
    by_id = {}
    for i, a in enumerate(anns["annotations"]):
        _need(annotations_path, f"annotations[{i}]", a, ("question_id", "answers", "multiple_choice_answer"))
        by_id[a["question_id"]] = a
    out = []
    for i, q in enumerate(qs["questions"]):
        _need(questions_path, f"questions[{i}]", q, ("question_id", "image_id", "question"))
        a = by_id.get(q["question_id"])
        if a is None:
            raise DataFormatError(annotations_path, f"question_id {q['question_id']}", "no annotation for question")
        answers = tuple(x["answer"] for x in a["answers"])
        out.append(VQAQuestion(int(q["question_id"]), int(q["image_id"]), q["question"], answers,
                               a.get("answer_type", ""), a["multiple_choice_answer"], a.get("question_type", "")))
    return out


def coco_val2014_name(image_id: int) -> str:
    return f"COCO_val2014_{image_id:012d}.jpg"


@dataclass(frozen=True)
class MMEQuestion:
    subtask: str
    image: str  # path of the image file
    question: str
    answer: str  # "Yes" or "No"


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _mme_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / "images" / f"{stem}{suffix}", folder / f"{stem}{suffix}"):
            if candidate.exists():
                return candidate
    return None


# The official release: questions per subtask (2 per image; 2374 in all).
MME_QUESTIONS = {"existence": 60, "count": 60, "position": 60, "color": 60, "posters": 294, "celebrity": 340,
                 "scene": 400, "landmark": 400, "artwork": 400, "OCR": 40, "commonsense_reasoning": 140,
                 "numerical_calculation": 40, "text_translation": 40, "code_reasoning": 40}
MME_TOTAL = sum(MME_QUESTIONS.values())


def mme_subtask_root(root) -> Path:
    """The folder holding MME's subtask folders: ``root`` itself (the release as unzipped), or the single
    folder below it that does (the hub download adds a level: ``MME_Benchmark_release_version/MME_Benchmark``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MME folder {root} does not exist")
    if any((root / name).is_dir() for name in MME_QUESTIONS):
        return root
    nested = [d for d in sorted(root.iterdir()) if d.is_dir() and any((d / n).is_dir() for n in MME_QUESTIONS)]
    if len(nested) == 1:
        return nested[0]
    raise DataFormatError(root, "folder", f"no MME subtask folder ({', '.join(list(MME_QUESTIONS)[:3])}, ...) "
                          "here or one level below")


def read_mme(root) -> list[MMEQuestion]:
    """MME: one folder per subtask, either ``images/`` + ``questions_answers_YN/*.txt`` (artwork, celebrity,
    landmark, posters, scene) or images and .txt side by side (the others); each txt line is
    ``question<TAB>Yes|No``. Questions are kept verbatim (some have two spaces before "Please answer yes or no.")."""
    base = mme_subtask_root(root)
    out = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name in MME_QUESTIONS):
        qa_dir = sub / "questions_answers_YN" if (sub / "questions_answers_YN").is_dir() else sub
        for txt in sorted(qa_dir.glob("*.txt")):
            image = _mme_image(sub, txt.stem)
            if image is None:
                raise DataFormatError(txt, "file", f"no image {txt.stem}.jpg/.png in {sub}")
            for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != 2 or parts[1].strip() not in ("Yes", "No"):
                    raise DataFormatError(txt, f"line {n}", f"expected 'question<TAB>Yes|No', got {line!r}")
                out.append(MMEQuestion(sub.name, str(image), parts[0], parts[1].strip()))
    return out


@dataclass(frozen=True)
class POPEQuestion:
    question_id: int
    image: str
    text: str
    label: str  # "yes" or "no"


def read_pope(path) -> list[POPEQuestion]:
    """POPE ``coco_pope_<split>.json``: JSON lines {question_id, image, text, label}."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"line {n}", f"not valid JSON ({e.msg})") from None
            _need(path, f"line {n}", r, ("question_id", "image", "text", "label"))
            if r["label"] not in ("yes", "no"):
                raise DataFormatError(path, f"line {n}", f"label must be yes/no, got {r['label']!r}")
            out.append(POPEQuestion(int(r["question_id"]), r["image"], r["text"], r["label"]))
    return out
