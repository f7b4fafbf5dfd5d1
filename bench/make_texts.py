#!/usr/bin/env python3
"""Writes the benchmark text sets: short (~16 tokens), medium (~70) and long (>=256,
truncated to 256), 64 texts each, deterministic (seeded)."""
import os
import random
import sys

WORDS = (
    "the of and to in is was for on that with as by at from this be are have it not or an "
    "which but were their has had all one been more when there can would so what about out "
    "up into than them some could other time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years "
    "where much your way well down should because each just those people how too little state "
    "good very make world still own see men work long get here between both life being under "
    "never day same another know while last might us great old year off come since against go "
    "came right used take three meeting invoice offer free account payment schedule project "
    "report customer delivery question answer review product service team manager update"
).split()


def sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(42)
    # ~1 token per word for this vocabulary, plus [CLS]/[SEP] and the period.
    for name, n_words in [("short", 13), ("medium", 67), ("long", 400)]:
        with open(os.path.join(out, f"{name}.txt"), "w") as f:
            for _ in range(64):
                f.write(sentence(rng, n_words) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
