"""Generators for the starter's science quiz, biography reading and arithmetic tasks (rows from banks_qa.py)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import banks_qa as bank

Row = dict[str, Any]
Question = tuple[str, str, list[str]]  # question, correct answer, wrong answers


def _others(groups: dict[str, list[str]], skip: str) -> list[str]:
    return [item for name, items in sorted(groups.items()) if name != skip for item in items]


def _class_question(rng: random.Random) -> Question:
    cls = rng.choice(sorted(bank.ANIMAL_CLASSES))
    if rng.random() < 0.6:
        return (f"Which of these animals is a {cls}?", rng.choice(bank.ANIMAL_CLASSES[cls]),
                rng.sample(_others(bank.ANIMAL_CLASSES, cls), 3))
    return (f"Which of these animals is not a {cls}?", rng.choice(_others(bank.ANIMAL_CLASSES, cls)),
            rng.sample(bank.ANIMAL_CLASSES[cls], 3))


def _state_question(rng: random.Random) -> Question:
    state = rng.choice(sorted(bank.STATES))
    return (f"Which of these is a {state} at room temperature?", rng.choice(bank.STATES[state]),
            rng.sample(_others(bank.STATES, state), 3))


def _unit_question(rng: random.Random) -> Question:
    quantity = rng.choice(sorted(bank.UNITS))
    return (f"Which unit is used to measure {quantity}?", rng.choice(bank.UNITS[quantity]),
            rng.sample(_others(bank.UNITS, quantity), 3))


def _material_question(rng: random.Random) -> Question:
    if rng.random() < 0.5:
        return ("Which of these objects conducts electricity best?", rng.choice(bank.CONDUCTORS), rng.sample(bank.INSULATORS, 3))
    return ("Which of these is a renewable source of energy?", rng.choice(bank.RENEWABLE), list(bank.NON_RENEWABLE))


def _planet_question(rng: random.Random) -> Question:
    options = rng.sample(bank.PLANETS, 4)
    kind = rng.randrange(3)
    if kind == 0:
        right = min(options, key=bank.PLANETS.index)
        text = "Which of these planets is closest to the Sun?"
    elif kind == 1:
        right = max(options, key=bank.PLANETS.index)
        text = "Which of these planets is farthest from the Sun?"
    else:
        right = min(options, key=bank.PLANETS_BY_SIZE.index)
        text = "Which of these planets is the largest?"
    return text, right, [o for o in options if o != right]


def _diet_question(rng: random.Random) -> Question:
    if rng.random() < 0.5:
        return ("Which of these animals eats only plants?", rng.choice(bank.HERBIVORES), rng.sample(bank.CARNIVORES, 3))
    return ("Which of these animals hunts other animals for food?", rng.choice(bank.CARNIVORES), rng.sample(bank.HERBIVORES, 3))


def _fixed_question(rng: random.Random) -> Question:
    question, right, wrong = rng.choice(bank.FIXED_FACTS)
    return question, right, list(wrong)


_QUESTION_KINDS: list[Callable[[random.Random], Question]] = [
    _class_question, _state_question, _unit_question, _material_question, _planet_question, _diet_question,
    _fixed_question, _fixed_question,
]


def science_quiz(rng: random.Random) -> Iterator[Row]:
    """Four-way science multiple choice, ARC-style: ``id, question, choices {text, label}, answerKey``."""
    for n in itertools.count():
        question, right, wrong = rng.choice(_QUESTION_KINDS)(rng)
        options = [right, *wrong]
        rng.shuffle(options)
        labels = ["A", "B", "C", "D"]
        yield {"id": f"sq-{n:04d}", "question": question, "choices": {"text": options, "label": labels},
               "answerKey": labels[options.index(right)]}


def _biography(rng: random.Random) -> tuple[str, dict[str, str]]:
    first, last = rng.choice(bank.FIRST_NAMES), rng.choice(bank.SURNAMES)
    subject = rng.choice(sorted(bank.JOBS))
    job, achievement = bank.JOBS[subject]
    facts = {
        "name": f"{first} {last}", "last": last, "year": str(rng.randrange(1948, 1996)),
        "birthplace": rng.choice(bank.BIRTHPLACES), "subject": subject, "university": rng.choice(bank.UNIVERSITIES),
        "job": job, "employer": rng.choice(bank.EMPLOYERS), "achievement": achievement, "hobby": rng.choice(bank.HOBBIES),
    }
    f = facts
    sentences = [
        rng.choice([f"{f['name']} was born in {f['birthplace']} in {f['year']}.",
                    f"Born in {f['year']} in {f['birthplace']}, {f['name']} grew up near the harbour."]),
        rng.choice([f"{last} studied {f['subject']} at {f['university']}.",
                    f"After school, {last} went to {f['university']} to read {f['subject']}."]),
        rng.choice([f"Later, working as {f['job']} at {f['employer']}, {last} {f['achievement']}.",
                    f"{last} joined {f['employer']} as {f['job']} and there {f['achievement']}."]),
        rng.choice([f"Outside work, {last} is known for a love of {f['hobby']}.",
                    f"In spare moments {last} enjoys {f['hobby']}."]),
    ]
    return " ".join(sentences), facts


_BIO_QUESTIONS = [
    ("Where was {name} born?", "birthplace"), ("In which year was {name} born?", "year"),
    ("What did {name} study?", "subject"), ("Where did {name} study?", "university"),
    ("Which organisation did {name} work for?", "employer"), ("What is {name}'s hobby?", "hobby"),
    ("What did {name} achieve at work?", "achievement"),
]


def biography_qa(rng: random.Random) -> Iterator[Row]:
    """SQuAD-style extractive QA on short fictional biographies: ``id, title, context, question, answers``."""
    for n in itertools.count():
        context, facts = _biography(rng)
        question, key = rng.choice(_BIO_QUESTIONS)
        answer = facts[key]
        yield {"id": f"bio-{n:04d}", "title": facts["name"], "context": context,
               "question": question.format(name=facts["name"]),
               "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def _shopping(rng: random.Random) -> tuple[str, list[str], int]:
    (name, _), (a, b) = rng.choice(bank.PEOPLE), rng.sample(bank.ITEMS, 2)
    na, nb, pa, pb = rng.randrange(2, 7), rng.randrange(2, 7), rng.randrange(2, 10), rng.randrange(2, 10)
    total = na * pa + nb * pb
    q = f"{name} buys {na} {a[1]} at ${pa} each and {nb} {b[1]} at ${pb} each. How much does {name} spend in dollars?"
    return q, [f"The {a[1]} cost {na} * {pa} = {na * pa} dollars.", f"The {b[1]} cost {nb} * {pb} = {nb * pb} dollars.",
               f"Altogether {na * pa} + {nb * pb} = {total} dollars."], total


def _sharing(rng: random.Random) -> tuple[str, list[str], int]:
    (name, pron), item = rng.choice(bank.PEOPLE), rng.choice(bank.ITEMS)
    friends, each = rng.randrange(2, 7), rng.randrange(3, 12)
    q = f"{name} has {friends * each} {item[1]} and shares them equally among {friends} friends. How many {item[1]} does each friend get?"
    return q, [f"Each friend gets {friends * each} / {friends} = {each} {item[1]}."], each


def _change(rng: random.Random) -> tuple[str, list[str], int]:
    (name, pron), item = rng.choice(bank.PEOPLE), rng.choice(bank.ITEMS)
    n, price = rng.randrange(2, 6), rng.randrange(2, 9)
    note = next(v for v in (20, 50, 100) if v > n * price)
    q = f"{name} buys {n} {item[1]} at ${price} each and pays with a ${note} note. How much change does {pron} get in dollars?"
    return q, [f"The {item[1]} cost {n} * {price} = {n * price} dollars.", f"The change is {note} - {n * price} = {note - n * price} dollars."], note - n * price


def _distance(rng: random.Random) -> tuple[str, list[str], int]:
    vehicle, speed, hours = rng.choice(bank.VEHICLES), rng.randrange(12, 90), rng.randrange(2, 6)
    q = f"A {vehicle} travels at a steady {speed} kilometres per hour for {hours} hours. How many kilometres does it cover?"
    return q, [f"Distance is speed times time: {speed} * {hours} = {speed * hours} kilometres."], speed * hours


def _leftover(rng: random.Random) -> tuple[str, list[str], int]:
    made, morning, afternoon = rng.randrange(40, 120), rng.randrange(8, 20), rng.randrange(8, 20)
    q = f"A baker makes {made} muffins. She sells {morning} in the morning and {afternoon} in the afternoon. How many muffins are left?"
    sold = morning + afternoon
    return q, [f"She sells {morning} + {afternoon} = {sold} muffins.", f"That leaves {made} - {sold} = {made - sold} muffins."], made - sold


def _saving(rng: random.Random) -> tuple[str, list[str], int]:
    (name, pron), weekly, weeks = rng.choice(bank.PEOPLE), rng.randrange(5, 25), rng.randrange(3, 15)
    q = f"{name} saves ${weekly} every week. How many weeks will it take {name} to save ${weekly * weeks}?"
    return q, [f"It takes {weekly * weeks} / {weekly} = {weeks} weeks."], weeks


def _area(rng: random.Random) -> tuple[str, list[str], int]:
    length, width = rng.randrange(3, 25), rng.randrange(2, 15)
    q = f"A rectangular garden is {length} metres long and {width} metres wide. What is its area in square metres?"
    return q, [f"Area is length times width: {length} * {width} = {length * width} square metres."], length * width


def _reading(rng: random.Random) -> tuple[str, list[str], int]:
    (name, pron), per_day, days = rng.choice(bank.PEOPLE), rng.randrange(8, 30), rng.randrange(2, 8)
    pages = per_day * days + rng.randrange(10, 120)
    q = f"A book has {pages} pages. {name} reads {per_day} pages a day. How many pages are left after {days} days?"
    read = per_day * days
    return q, [f"In {days} days {name} reads {per_day} * {days} = {read} pages.", f"That leaves {pages} - {read} = {pages - read} pages."], pages - read


_PROBLEMS = [_shopping, _sharing, _change, _distance, _leftover, _saving, _area, _reading]


def word_problems(rng: random.Random) -> Iterator[Row]:
    """Arithmetic word problems, GSM8K-style: ``question, answer`` (worked steps then ``#### <number>``)."""
    while True:
        question, steps, result = rng.choice(_PROBLEMS)(rng)
        yield {"question": question, "answer": "\n".join(steps) + f"\n#### {result}"}
