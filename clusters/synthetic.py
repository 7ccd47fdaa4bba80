"""Generated task corpora with a known family per task, for tests and the scale benchmark.

Eight task families (sentiment, NLI, arithmetic, topic, summarisation, extractive QA, coreference,
translation), each with its own instructions and content vocabulary. Task ``i`` of a family draws
its own domain words, so tasks of one family are similar but not identical. Everything is drawn
from a seeded ``random.Random``: the same arguments give the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from taskmill.builders import keys
from taskmill.records import Row

Render = Callable[[random.Random, list[str]], tuple[str, str]]

_NOUNS = ("river city garden engine painter doctor market castle forest violin harbor teacher "
          "planet bridge kitchen island camera library desert soldier village mirror tower lantern").split()


def _words(rng: random.Random, pool: list[str], n: int) -> str:
    return " ".join(rng.choice(pool) for _ in range(n))


def _sentiment(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    good = rng.random() < 0.5
    adj = rng.choice(["wonderful", "brilliant", "moving", "delightful"] if good else ["boring", "awful", "dull", "clumsy"])
    review = f"the {rng.choice(dom)} in this film was {adj} and the {rng.choice(dom)} felt {adj} too"
    template = rng.choice(["Review: {r}\nIs this review positive or negative?", "{r}\nDid the reviewer like the movie? Answer positive or negative."])
    return template.format(r=review), "positive" if good else "negative"


def _nli(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    a, b = rng.choice(dom), rng.choice(_NOUNS)
    template = rng.choice(["Premise: A {a} stands near the {b}.\nHypothesis: The {a} is close to a {b}.\nDoes the premise entail the hypothesis? Yes, no or maybe?",
                           "Suppose a {a} waits by the {b}. Can we infer that the {b} is empty? Yes, no, or maybe?"])
    return template.format(a=a, b=b), rng.choice(["yes", "no", "maybe"])


def _math(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    x, y = rng.randint(2, 40), rng.randint(2, 40)
    thing = rng.choice(dom)
    template = rng.choice(["Question: Sam has {x} {t}s and buys {y} more. How many {t}s does Sam have now?\nAnswer:",
                           "Solve the word problem. A shop sold {x} {t}s in the morning and {y} in the afternoon. How many in total?"])
    return template.format(x=x, y=y, t=thing), str(x + y)


def _topic(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    label = rng.choice(["world", "sports", "business", "science"])
    text = f"The {rng.choice(dom)} announced a new {label} plan for the {rng.choice(_NOUNS)} on Monday."
    template = rng.choice(["Article: {x}\nWhat is the topic of this news article: world, sports, business or science?", "{x}\nWhich section of the newspaper is this article from?"])
    return template.format(x=text), label


def _summary(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    text = f"Researchers studied the {rng.choice(dom)} and the {rng.choice(dom)} for three years. " + _words(rng, dom + _NOUNS, 12) + "."
    template = rng.choice(["Summarize the following abstract in one sentence:\n{x}", "{x}\nWrite a short TL;DR summary of the paper above."])
    return template.format(x=text), f"A study of the {rng.choice(dom)}."


def _qa(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    who, where = rng.choice(dom), rng.choice(_NOUNS)
    context = f"In 1890 the {who} moved to the {where}, where it stayed for many years."
    template = rng.choice(["Context: {c}\nQuestion: Where did the {w} move in 1890?\nAnswer:", "Read the passage and answer the question.\n{c}\nWhere did the {w} move?"])
    return template.format(c=context, w=who), f"the {where}"


def _coref(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    a, b = rng.choice(dom), rng.choice(_NOUNS)
    template = rng.choice(["The {a} thanked the {b} because it had helped. In this sentence, does 'it' refer to the {a} or the {b}?",
                           "Fill in the blank: The {a} could not lift the {b} because _ was too heavy. Option 1: {a}. Option 2: {b}."])
    return template.format(a=a, b=b), rng.choice([a, b])


def _translate(rng: random.Random, dom: list[str]) -> tuple[str, str]:
    thing = rng.choice(dom)
    template = rng.choice(["Translate to French: The {t} is on the table.", "How do you say 'I see the {t}' in French?"])
    return template.format(t=thing), f"le {thing} est sur la table"


@dataclass(frozen=True)
class Family:
    """A task family: name, renderer and content vocabulary."""

    name: str
    render: Render
    vocab: tuple[str, ...]


FAMILIES: tuple[Family, ...] = (
    Family("sentiment", _sentiment, tuple("acting plot soundtrack director ending script cast scenery dialogue pacing".split())),
    Family("nli", _nli, tuple("man woman child dog cyclist crowd musician worker tourist player".split())),
    Family("math", _math, tuple("apple pencil marble sticker cookie book coin ticket orange balloon".split())),
    Family("topic", _topic, tuple("government company league minister startup agency team federation council bank".split())),
    Family("summary", _summary, tuple("protein network algorithm galaxy climate neuron dataset enzyme model reactor".split())),
    Family("qa", _qa, tuple("emperor poet duke composer scientist merchant bishop general architect queen".split())),
    Family("coref", _coref, tuple("trophy suitcase councilman demonstrator lawyer witness father son table bottle".split())),
    Family("translation", _translate, tuple("cat house book chair window bread car flower pen door".split())),
)


def row_id(task: str, split: str, row_index: int, template_id: str, fmt: str, seed: int = 0) -> str:
    """The corpus schema's id, as ``taskmill build`` makes it: from the sha256 of (seed, task, split,
    row_index, template_id) and the format, 16 hex digits."""
    return keys.row_id(keys.row_digest(seed, task, split, row_index, template_id), fmt)


def make_row(task: str, dataset: str, row_index: int, prompt: str, completion: str, template_id: str = "t0", split: str = "train") -> Row:
    """One zero-shot corpus row with the schema's derived fields filled in."""
    return Row(
        id=row_id(task, split, row_index, template_id, "zero_shot"),
        task=task, dataset=dataset, split=split, row_index=row_index,
        template_id=template_id, template_name=template_id, format="zero_shot",
        prompt=prompt, completion=completion,
        messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}),
    )


def make_tasks(tasks_per_family: int, rows_per_task: int, seed: int = 0, families: tuple[Family, ...] = FAMILIES) -> tuple[list[Row], dict[str, str]]:
    """Generate rows for ``tasks_per_family`` tasks of each family.

    Returns:
        The rows (task-major order) and task -> family name.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    family_of: dict[str, str] = {}
    for fam in families:
        for i in range(tasks_per_family):
            task = f"{fam.name}_{i:04d}"
            family_of[task] = fam.name
            domain = rng.sample(list(fam.vocab), k=min(5, len(fam.vocab)))  # this task's own content words
            for j in range(rows_per_task):
                prompt, completion = fam.render(rng, domain)
                rows.append(make_row(task, f"synthetic/{task}", j, prompt, completion, template_id=f"{fam.name}-{j % 2}"))
    return rows, family_of
