"""The toy world's language: captions in three styles, questions with short and long answers, descriptions.

Every sentence is a deterministic function of a scene and a seeded generator, so the same world always reads
the same. Short answers are what VQAv2 annotators would type; long answers are what a LLaVA assistant says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflow_scripts.toyworld.scenes import CELLS, COLOURS, PARTNER, SHAPES, Scene, Shape

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


@dataclass(frozen=True)
class QA:
    """A question about a scene; ``kind`` names the skill (colour, count, exists, position, size, ...)."""

    kind: str
    question: str
    short: str
    long: str


def plural(kind: str, n: int = 2) -> str:
    if n == 1:
        return kind
    return kind + ("es" if kind.endswith(("s", "x")) else "s")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _ordered(scene: Scene, rng: np.random.Generator) -> list[Shape]:
    shapes = list(scene.shapes)
    return shapes[::-1] if rng.random() < 0.3 else shapes


def cc3m_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Alt-text style, as web captions are: lower case, no positions, sometimes a stock-photo frame."""
    things = join_list([article(s.phrase(with_size=rng.random() < 0.5)) for s in _ordered(scene, rng)])
    frame = _choice(rng, ("{} on a white background", "vector illustration of {}", "{} isolated on white",
                          "simple geometric shapes : {}", "{}", "clip art of {}"))
    return frame.format(things)


def coco_caption(scene: Scene, rng: np.random.Generator) -> str:
    """COCO style: one sentence, capitalised, naming shapes with where they are."""
    parts = []
    for s in _ordered(scene, rng):
        where = _choice(rng, ("at the {}", "in the {}", "in the {} corner"))
        parts.append(f"{article(s.phrase(with_size=rng.random() < 0.6))} {where.format(s.position)}")
    sentence = join_list(parts)
    if len(scene.shapes) > 1 and rng.random() < 0.3:
        sentence = f"{NUMBER_WORDS[len(scene.shapes)]} shapes : {sentence}"
    return sentence[0].upper() + sentence[1:] + "."


def flickr_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Flickr30k style: a scene told as what is there, without grid positions, varied openings."""
    n = len(scene.shapes)
    things = join_list([article(s.phrase(with_size=rng.random() < 0.7)) for s in _ordered(scene, rng)])
    opening = _choice(rng, ("There is {} on the page", "Someone drew {}", "A white page showing {}",
                            "{} drawn on paper", "The picture has {}"))
    sentence = opening.format(things)
    if n > 1 and rng.random() < 0.4:
        sentence += f" , {NUMBER_WORDS[n]} shapes in all"
    return sentence[0].upper() + sentence[1:] + " ."


def detail_description(scene: Scene) -> str:
    """A LLaVA 'detail' answer: every shape with size, colour and position."""
    n = len(scene.shapes)
    head = f"The image shows {NUMBER_WORDS[n]} {plural('shape', n)} on a white background."
    body = " ".join(f"In the {s.position} there is {article(s.phrase())}." for s in scene.shapes)
    empty = [c for i, c in enumerate(CELLS) if i not in {s.cell for s in scene.shapes}]
    tail = f" The {join_list(empty)} {'is' if len(empty) == 1 else 'are'} empty." if empty else ""
    return f"{head} {body}{tail}"


def scene_in_words(scene: Scene) -> str:
    """The scene told in words, shape by shape in reading order ('large red circle top left , small blue star
    bottom right'): what the toy LLM reads in its pretraining where a picture would be."""
    return " , ".join(f"{s.phrase()} {s.position}" for s in scene.shapes)


def _unique_kind(scene: Scene, rng: np.random.Generator) -> Shape | None:
    singles = [s for s in scene.shapes if scene.count(s.kind) == 1]
    return _choice(rng, singles) if singles else None


def exists_qa(scene: Scene, rng: np.random.Generator, answer_yes: bool) -> QA:
    """'Is there a star in the image?' with the asked answer (yes/no balanced by the caller)."""
    present = sorted(scene.kinds())
    absent = [k for k in SHAPES if k not in scene.kinds()]
    if answer_yes or not absent:
        kind = _choice(rng, present)
        where = scene.of_kind(kind)[0]
        return QA("exists", f"Is there {article(kind)} in the image?", "yes",
                  f"Yes, there is {article(where.phrase())} in the {where.position}.")
    kind = _choice(rng, absent)
    return QA("exists", f"Is there {article(kind)} in the image?", "no", f"No, there is no {kind} in the image.")


def existence_checks(scene: Scene, rng: np.random.Generator, n: int) -> list[QA]:
    """``n`` existence questions about distinct kinds, half of them present (as POPE asks per image). Half the
    absent kinds asked are the present kinds' partners when those are absent: the object a co-occurrence prior
    would guess, which POPE's adversarial split asks about."""
    present = [str(k) for k in rng.permutation(sorted(scene.kinds()))]
    absent = [k for k in SHAPES if k not in scene.kinds()]
    partners = sorted({PARTNER[k] for k in present} & set(absent))
    asked = [(k, True) for k in present[: n - n // 2]]
    while len(asked) < n and absent:
        pick = partners if partners and rng.random() < 0.5 else absent
        kind = _choice(rng, pick)
        absent.remove(kind)
        partners = [k for k in partners if k != kind]
        asked.append((kind, False))
    return [QA("exists", f"Is there {article(k)} in the image?", "yes" if yes else "no",
               f"Yes, there is {article(k)} in the image." if yes else f"No, there is no {k} in the image.")
            for k, yes in asked]


def wrong_count(n: int, rng: np.random.Generator) -> int:
    """A count near ``n`` that is not ``n`` (one more or one fewer, never zero)."""
    return n + 1 if n == 1 or rng.random() < 0.5 else n - 1


def count_question(kind: str, k: int, where: str = "the image") -> str:
    """'Are there two squares in the image?'"""
    return f"{'Is' if k == 1 else 'Are'} there {NUMBER_WORDS[k]} {plural(kind, k)} in {where}?"


def check_qa(scene: Scene, rng: np.random.Generator, answer_yes: bool) -> QA:
    """A yes/no check of one shape's colour, count or position ('Is the red circle in the top left?'), the
    checks MME's perception subtasks ask besides existence."""
    s = _choice(rng, list(scene.shapes))
    form = int(rng.integers(3))
    if form == 0:
        colour = s.colour if answer_yes else _choice(rng, [c for c in COLOURS if c != s.colour])
        yes = any(x.kind == s.kind and x.colour == colour for x in scene.shapes)
        return QA("check", f"Is there a {colour} {s.kind} in the image?", "yes" if yes else "no",
                  f"Yes, there is a {colour} {s.kind}." if yes else f"No, there is no {colour} {s.kind}.")
    if form == 1:
        n = scene.count(s.kind)
        k = n if answer_yes else wrong_count(n, rng)
        return QA("check", count_question(s.kind, k), "yes" if k == n else "no",
                  f"{'Yes' if k == n else 'No'}, there {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} "
                  f"{plural(s.kind, n)}.")
    name = s.phrase(with_size=False)
    cell = s.position if answer_yes else _choice(rng, [c for i, c in enumerate(CELLS) if i != s.cell])
    yes = any(x.phrase(with_size=False) == name and x.position == cell for x in scene.shapes)
    return QA("check", f"Is the {name} in the {cell}?", "yes" if yes else "no",
              f"Yes, the {name} is in the {cell}." if yes else f"No, the {name} is in the {s.position}.")


def qa_pool(scene: Scene, rng: np.random.Generator) -> list[QA]:
    """One question of each skill that applies to this scene."""
    n = len(scene.shapes)
    pool = [QA("count", "How many shapes are there?", str(n),
               f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {plural('shape', n)}.")]
    kind = _choice(rng, SHAPES)
    k = scene.count(kind)
    pool.append(QA("count", f"How many {plural(kind)} are there?", str(k),
                   f"There {'is' if k == 1 else 'are'} {NUMBER_WORDS[k]} {plural(kind, k)}."))
    pool.append(exists_qa(scene, rng, answer_yes=rng.random() < 0.5))
    single = _unique_kind(scene, rng)
    if single is not None:
        pool.append(QA("colour", f"What color is the {single.kind}?", single.colour,
                       f"The {single.kind} is {single.colour}."))
        pool.append(QA("size", f"Is the {single.kind} large or small?", single.size,
                       f"The {single.kind} is {single.size}."))
    s = _choice(rng, list(scene.shapes))
    pool.append(QA("position", f"Where is the {s.phrase(with_size=False)}?", s.position,
                   f"The {s.phrase(with_size=False)} is in the {s.position}."))
    return pool


def reasoning_qa(scene: Scene, rng: np.random.Generator) -> QA:
    """A LLaVA 'complex reasoning' question: the answer states its steps."""
    n = len(scene.shapes)
    which = int(rng.integers(3))
    if which == 0:
        colour = _choice(rng, sorted({s.colour for s in scene.shapes} | {_choice(rng, list(COLOURS))}))
        m = sum(s.colour == colour for s in scene.shapes)
        return QA("reasoning", f"If all the {colour} shapes were removed, how many shapes would be left?",
                  str(n - m), f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {plural('shape', n)} and "
                  f"{NUMBER_WORDS[m]} of them {'is' if m == 1 else 'are'} {colour}, so {NUMBER_WORDS[n - m]} "
                  f"would be left.")
    if which == 1:
        cell = int(rng.integers(len(CELLS)))
        here = [s for s in scene.shapes if s.cell == cell]
        q = f"What is in the {CELLS[cell]} corner, and what color is it?"
        if here:
            return QA("reasoning", q, here[0].colour,
                      f"The {CELLS[cell]} corner holds {article(here[0].phrase())}, so its color is {here[0].colour}.")
        where = join_list([s.position for s in scene.shapes])
        return QA("reasoning", q, "nothing",
                  f"The {CELLS[cell]} corner is empty; the shapes are in the {where}, so there is no color to name.")
    a, b = (str(x) for x in rng.choice(SHAPES, size=2, replace=False))
    ca, cb = scene.count(a), scene.count(b)
    verdict = "yes" if ca > cb else "no"
    return QA("reasoning", f"Are there more {plural(a)} than {plural(b)}?", verdict,
              f"There {'is' if ca == 1 else 'are'} {NUMBER_WORDS[ca]} {plural(a, ca)} and {NUMBER_WORDS[cb]} "
              f"{plural(b, cb)}, so the answer is {verdict}.")
