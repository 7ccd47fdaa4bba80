"""Generators for the starter's review, topic, intent and headline tasks (rows from banks_*.py)."""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterator
from typing import Any

import banks_news as news
import banks_reviews as rev

Row = dict[str, Any]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def product_reviews(rng: random.Random) -> Iterator[Row]:
    """Binary sentiment of product reviews: ``product, title, review, label`` (0=negative, 1=positive)."""
    for label in itertools.cycle((1, 0)):
        product = rng.choice(sorted(rev.PRODUCTS))
        specific = rev.PRODUCTS[product][0 if label else 1]
        generic = rng.sample(rev.POSITIVE_GENERIC if label else rev.NEGATIVE_GENERIC, 2)
        body = [specific, generic[0].format(product=product)]
        if rng.random() < 0.5:
            body.append(generic[1].format(product=product))
        rng.shuffle(body)
        opener = rng.choice(rev.POSITIVE_OPENERS if label else rev.NEGATIVE_OPENERS).format(product=product)
        parts = [opener, *body]
        if rng.random() < 0.35:  # a minor point the other way, so a single word does not give the label away
            parts.append(rng.choice(rev.POSITIVE_CAVEATS if label else rev.NEGATIVE_CAVEATS))
        parts.append(rng.choice(rev.POSITIVE_CLOSERS if label else rev.NEGATIVE_CLOSERS))
        title = rng.choice(rev.POSITIVE_TITLES if label else rev.NEGATIVE_TITLES)
        yield {"product": product, "title": title, "review": " ".join(parts), "label": label}


def _aspect_sentences(rng: random.Random, aspects: list[str], positive: bool) -> list[str]:
    return [rng.choice(rev.RESTAURANT_ASPECTS[a][0 if positive else 1]) for a in aspects]


def restaurant_reviews(rng: random.Random) -> Iterator[Row]:
    """Three-way restaurant review sentiment: ``restaurant, text, label`` (0=negative, 1=mixed, 2=positive)."""
    for label in itertools.cycle((2, 0, 1)):
        name = rng.choice(rev.RESTAURANT_NAMES)
        aspects = rng.sample(sorted(rev.RESTAURANT_ASPECTS), 3)
        if label == 1:
            good = _aspect_sentences(rng, aspects[:rng.choice((1, 2))], True)
            bad = _aspect_sentences(rng, aspects[len(good):len(good) + 1], False)
            first, second = (good, bad) if rng.random() < 0.5 else (bad, good)
            body = [*first, f"{rng.choice(rev.CONTRASTS)} {second[0][0].lower()}{second[0][1:]}", *second[1:]]
        else:
            body = _aspect_sentences(rng, aspects[:rng.choice((2, 3))], label == 2)
        opener = f"We went to {name} {rng.choice(rev.OCCASIONS)}."
        text = " ".join([opener, *body, rng.choice(rev.RESTAURANT_CLOSERS[label])])
        yield {"restaurant": name, "text": text, "label": label}


def _fill(frame: str, values: dict[str, str]) -> str:
    return frame.format(**values)


def _slot_values(rng: random.Random, frames: tuple[str, ...]) -> dict[str, str]:
    """A value for every slot the frames use (``x_cap`` slots are ``x`` capitalised)."""
    names = {f for frame in frames for _, f, _, _ in string.Formatter().parse(frame) if f}
    values: dict[str, str] = {}
    for name in sorted(names):
        base = name[:-4] if name.endswith("_cap") else name
        if base not in values:
            pool = [v for v in news.SLOTS[base] if v not in values.values()]
            values[base] = rng.choice(pool)
        values[name] = _cap(values[base]) if name.endswith("_cap") else values[base]
    return values


def news_topics(rng: random.Random) -> Iterator[Row]:
    """News topic classification: ``headline, body, label`` (0=politics .. 4=arts and culture)."""
    for label in itertools.cycle(range(5)):
        headline, body = rng.choice(news.TOPIC_FRAMES[label])
        values = _slot_values(rng, (headline, body))
        yield {"headline": _fill(headline, values), "body": _fill(body, values), "label": label}


def headline_writing(rng: random.Random) -> Iterator[Row]:
    """Headline generation for short local news reports: ``article, headline``."""
    while True:
        headline, article = rng.choice(news.HEADLINE_FRAMES)
        values = _slot_values(rng, (headline, article))
        yield {"article": _fill(article, values), "headline": _fill(headline, values)}


def support_intents(rng: random.Random) -> Iterator[Row]:
    """Customer-support message intent: ``message, label`` (0=billing .. 4=returns and refunds)."""
    names = ["Sam", "Priya", "Jon", "Alice", "Marek", "Fatima", "Liam", "Zoe"]
    for label in itertools.cycle(range(5)):
        problem = rng.choice(rev.SUPPORT_PROBLEMS[label]).format(
            order=f"#{rng.randrange(10000, 99999)}", amount=f"£{rng.randrange(5, 200)}.{rng.choice(('00', '49', '99'))}",
            day=rng.choice(rev.DAYS), device=rng.choice(rev.DEVICES))
        body = " ".join(p for p in (problem, rng.choice(rev.SUPPORT_REQUESTS[label])) if p)
        parts = [rng.choice(rev.SUPPORT_GREETINGS), body, rng.choice(rev.SUPPORT_SIGNOFFS).format(name=rng.choice(names))]
        yield {"message": "\n".join(p for p in parts if p), "label": label}
