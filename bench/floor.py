"""The floor: raw in-process ``llama_cpp.Llama`` streaming generation, one stream at a time.

Run by throughput.py in a process of its own: reads {"model", "threads", "max_tokens", "warmup",
"prompts"} as JSON on stdin, prints one JSON object with a result per prompt and the process's RSS.
Each result also carries llama.cpp's own decode rate for that generation (``llama_perf_context``:
generated tokens over the time spent in their ``llama_decode`` calls, what llama.cpp prints as "eval
time"), the ceiling a server on the same threads can approach.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    job = json.load(sys.stdin)
    import llama_cpp

    llm = llama_cpp.Llama(model_path=job["model"], n_ctx=4096, n_threads=job["threads"],
                          n_threads_batch=job["threads"], verbose=False, no_perf=False)

    def one(text: str) -> dict:
        llm.reset()  # no prefix reuse from the previous prompt
        llama_cpp.llama_perf_context_reset(llm.ctx)
        start = time.perf_counter()
        first, chunks, usage = None, 0, None
        for chunk in llm.create_completion(text, max_tokens=job["max_tokens"], temperature=0, seed=42, stream=True):
            if chunk["choices"] and chunk["choices"][0].get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - start
            usage = chunk.get("usage") or usage
        total = time.perf_counter() - start
        perf = llama_cpp.llama_perf_context(llm.ctx)
        return {"ttft": first, "total": total, "tokens": (usage or {}).get("completion_tokens") or chunks,
                "error": None if chunks else "no tokens",
                "llama_perf_decode_tok_s": perf.n_eval / perf.t_eval_ms * 1000 if perf.t_eval_ms > 0 else None}

    one(job["warmup"])
    results = [one(text) for text in job["prompts"]]
    json.dump({"results": results, "rss_mib": _rss_mib()}, sys.stdout)


if __name__ == "__main__":
    main()
