"""Generators for the starter's NLI, paraphrase and cause-effect tasks (rows from banks_reasoning.py)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import banks_reasoning as bank

Row = dict[str, Any]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def everyday_nli(rng: random.Random) -> Iterator[Row]:
    """Three-way NLI over everyday scenes: ``premise, hypothesis, label`` (0=entailment, 1=neutral, 2=contradiction)."""
    for label in itertools.cycle(range(3)):
        place, activity, gen, contra, neutral = rng.choice(bank.NLI_SCENES)
        name, day = rng.choice(bank.NAMES), rng.choice(bank.DAYS)
        if rng.random() < 0.5:
            premise = f"{name} {activity} at the {place} on {day} morning."
        else:
            premise = f"On {day} morning, {name} {activity} at the {place}."
        form = rng.choice(bank.NLI_FORMS[label])
        hypothesis = form.format(name=name, place=place, day=day, gen=gen, contra=contra, neutral=neutral)
        yield {"premise": premise, "hypothesis": hypothesis, "label": label}


def _realise(fact: tuple[str, str, str, str, str], form: int) -> str:
    agent, verb, obj, be, time = fact
    return [
        f"{_cap(agent)} {verb} {obj} {time}.",
        f"{_cap(time)}, {agent} {verb} {obj}.",
        f"{_cap(obj)} {be} {verb} by {agent} {time}.",
        f"{_cap(time)}, {obj} {be} {verb} by {agent}.",
    ][form]


def _changed(rng: random.Random, fact: tuple[str, str, str, str, str]) -> tuple[str, str, str, str, str]:
    """The same fact with one detail changed (the verb or the time), so it no longer means the same."""
    agent, verb, obj, be, time = fact
    if rng.random() < 0.5:
        return agent, bank.PARA_VERB_SWAPS[verb], obj, be, time
    return agent, verb, obj, be, rng.choice([t for t in bank.PARA_TIME_SWAPS if t != time])


def paraphrase_pairs(rng: random.Random) -> Iterator[Row]:
    """Paraphrase identification: ``sentence1, sentence2, label`` (0=not_equivalent, 1=equivalent)."""
    for label in itertools.cycle((1, 0)):
        fact = rng.choice(bank.PARA_FACTS)
        first, second = rng.sample(range(4), 2)
        other = fact if label else _changed(rng, fact)
        yield {"sentence1": _realise(fact, first), "sentence2": _realise(other, second), "label": label}


def cause_effect(rng: random.Random) -> Iterator[Row]:
    """COPA-style choice: ``premise, choice1, choice2, question, label`` (0=choice1, 1=choice2).

    Every triple gives one ``cause`` row and one ``effect`` row; the wrong choice is the triple's
    other clause, so both choices are about the same situation.
    """
    triples = list(bank.CAUSE_EFFECT)
    rng.shuffle(triples)
    for premise, cause, effect in triples:
        for question in ("cause", "effect"):
            right, wrong = (cause, effect) if question == "cause" else (effect, cause)
            label = rng.randrange(2)
            choices = (right, wrong) if label == 0 else (wrong, right)
            yield {"premise": premise, "choice1": choices[0], "choice2": choices[1], "question": question, "label": label}
