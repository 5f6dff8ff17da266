#!/usr/bin/env python3
"""The sentence-transformers side of `scripts/bench-embed --compare`.

Embeds every line of a file with SentenceTransformer(model_dir).encode(texts, batch_size=32)
on CPU with a fixed number of torch threads, and prints one JSON object with the same fields
as `vecsync embed --bench`, so both figures come from the same input on the same machine.

Usage: bench_sentence_transformers.py MODEL_DIR FILE [THREADS [REPEAT]]
REPEAT (default 1) encodes the file that many times and also reports the best and median run,
like `vecsync embed --bench --repeat`.
Needs: pip install torch sentence-transformers
"""
import json
import resource
import sys
import time

model_dir, path = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
repeat = max(1, int(sys.argv[4])) if len(sys.argv) > 4 else 1

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

times = []
cpu_started = time.process_time()
for _ in range(repeat):
    started = time.perf_counter()
    model.encode(texts, batch_size=32)
    times.append(time.perf_counter() - started)
# CPU time of every thread of the process: less sensitive than wall time to other load on
# the machine (vecsync reports the same figure).
cpu_seconds = (time.process_time() - cpu_started) / repeat
seconds = times[0]
ordered = sorted(times)

print(json.dumps({
    "texts": len(texts),
    "seconds": seconds,
    "sentences_per_second": len(texts) / seconds,
    "cpu_seconds": cpu_seconds,
    "runs": repeat,
    "best_seconds": ordered[0],
    "median_seconds": ordered[len(ordered) // 2],
    "best_sentences_per_second": len(texts) / ordered[0],
    "threads": threads,
    "load_seconds": load_seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "torch": torch.__version__,
}))
