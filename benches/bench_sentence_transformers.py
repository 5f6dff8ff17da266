#!/usr/bin/env python3
"""The sentence-transformers side of `scripts/bench-embed --compare`.

Embeds every line of a file with SentenceTransformer(model_dir).encode(texts, batch_size=32)
on CPU with a fixed number of torch threads, and prints one JSON object with the same fields
as `vecsync embed --bench`, so both figures come from the same input on the same machine.

Usage: bench_sentence_transformers.py MODEL_DIR FILE [THREADS]
Needs: pip install torch sentence-transformers
"""
import json
import resource
import sys
import time

model_dir, path = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2

import torch  # noqa: E402  (imported after argument checks: it takes seconds)
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(threads)
with open(path, encoding="utf-8") as f:
    # One text per line, exactly as `vecsync embed --file` reads them.
    texts = f.read().split("\n")
if texts and texts[-1] == "":
    texts.pop()
texts = [t[:-1] if t.endswith("\r") else t for t in texts]

started = time.perf_counter()
model = SentenceTransformer(model_dir, device="cpu")
load_seconds = time.perf_counter() - started

started = time.perf_counter()
model.encode(texts, batch_size=32)
seconds = time.perf_counter() - started

print(json.dumps({
    "texts": len(texts),
    "seconds": seconds,
    "sentences_per_second": len(texts) / seconds,
    "threads": threads,
    "load_seconds": load_seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "torch": torch.__version__,
}))
