#!/usr/bin/env python3
"""Writes benches/catalog-1000.txt, the fixed input of scripts/bench-embed.

1,000 synthetic catalog descriptions, one per line, recombined from the sentences of the 181
catalog descriptions in tests/fixtures/all-MiniLM-L6-v2.jsonl: each keeps a golden opening
sentence ("A <colour> <product> made from <material>.") followed by as many follow-up
sentences as a randomly drawn golden description has, so lengths follow the golden
distribution (about 41 tokens on average). Seeded, so the file is the same on every run;
the file is committed and this script only documents and reproduces it.

Usage: benches/make-catalog.py [COUNT] > benches/catalog-1000.txt
"""
import json
import pathlib
import random
import sys

SEED = 20240603
FIRST_CATALOG_ROW = 19  # the rows before are edge cases, not catalog descriptions

root = pathlib.Path(__file__).resolve().parent.parent
rows = [json.loads(line) for line in (root / "tests/fixtures/all-MiniLM-L6-v2.jsonl").open()]
texts = [r["text"] for r in rows[FIRST_CATALOG_ROW:]]
split = [[s if s.endswith(".") else s + "." for s in t.split(". ")] for t in texts]
openings = [s[0] for s in split]
followups = sorted({f for s in split for f in s[1:]})

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
rng = random.Random(SEED)
for _ in range(count):
    shape = rng.choice(split)
    sentences = [rng.choice(openings)] + [rng.choice(followups) for _ in shape[1:]]
    print(" ".join(sentences))
