"""Generate the shipped review-sentiment dataset (deterministic: same bytes every run).

    python zoo/data/make_sentiment.py   # rewrites zoo/data/sentiment_{train,eval}.jsonl

Short product/restaurant reviews labelled ``positive``/``negative``. Plain polarity words make
part of it easy; negation ("is not great") and contrast ("X is great, but Y is awful", where the
clause after "but"/"although" decides) make a bag-of-words reading wrong often enough that a
frozen MiniLM with a fresh head is near chance and an adapter has something to learn.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASPECTS = ["battery", "screen", "service", "food", "staff", "delivery", "price", "sound",
           "design", "camera", "keyboard", "room", "coffee", "packaging", "app", "support",
           "location", "menu", "fabric", "installation"]
POS = ["great", "excellent", "wonderful", "superb", "fantastic", "lovely", "reliable",
       "impressive", "pleasant", "solid", "outstanding", "good"]
NEG = ["terrible", "awful", "disappointing", "poor", "horrible", "broken", "mediocre",
       "useless", "annoying", "bad", "dreadful", "flimsy"]
POS_VERBS = ["loved", "enjoyed", "liked", "appreciated", "adored"]
NEG_VERBS = ["hated", "disliked", "regretted", "despised", "resented"]
OPENERS = ["", "Honestly, ", "Overall, ", "To be fair, ", "In short, ", "Well, "]


def _adj(rng: random.Random, positive: bool) -> str:
    return rng.choice(POS if positive else NEG)


def _clause(rng: random.Random, positive: bool) -> str:
    """A clause whose sentiment is ``positive``, possibly through negation."""
    aspect = rng.choice(ASPECTS)
    form = rng.randrange(4)
    if form == 0:
        return f"the {aspect} is {_adj(rng, positive)}"
    if form == 1:
        return f"the {aspect} is not {_adj(rng, not positive)}"
    if form == 2:
        return f"I {rng.choice(POS_VERBS if positive else NEG_VERBS)} the {aspect}"
    verb = rng.choice(NEG_VERBS if positive else POS_VERBS)
    return f"I did not {_base(verb)} the {aspect}"


def _base(verb: str) -> str:
    return {"loved": "love", "enjoyed": "enjoy", "liked": "like", "appreciated": "appreciate",
            "adored": "adore", "hated": "hate", "disliked": "dislike", "regretted": "regret",
            "despised": "despise", "resented": "resent"}[verb]


def example(rng: random.Random) -> dict[str, str]:
    positive = rng.random() < 0.5
    kind = rng.randrange(3)
    if kind == 0:
        text = _clause(rng, positive)
    elif kind == 1:
        text = f"{_clause(rng, not positive)}, but {_clause(rng, positive)}"
    else:
        text = f"although {_clause(rng, not positive)}, {_clause(rng, positive)}"
    text = rng.choice(OPENERS) + text
    text = text[0].upper() + text[1:] + "."
    return {"text": text, "label": "positive" if positive else "negative"}


def generate(n: int, seed: int, exclude: set[str] | None = None) -> list[dict[str, str]]:
    rng = random.Random(seed)
    seen = set(exclude or ())
    rows: list[dict[str, str]] = []
    while len(rows) < n:
        row = example(rng)
        if row["text"] not in seen:
            seen.add(row["text"])
            rows.append(row)
    return rows


def write(rows: list[dict[str, str]], path: Path) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    here = Path(__file__).resolve().parent
    train = generate(2000, seed=1)
    evaluation = generate(500, seed=2, exclude={r["text"] for r in train})
    write(train, here / "sentiment_train.jsonl")
    write(evaluation, here / "sentiment_eval.jsonl")


if __name__ == "__main__":
    main()
