"""Why the server's memory grows with the variety of requests: Paddle Inference's oneDNN kernels are cached
per input shape (batch rows × padded width), each new shape costing memory and a slow first call.

    .venv/bin/python bench/shapes.py [--quick] [--size tiny|small|base ...]   (default: tiny and small)

``inference.StaticForward`` pads widths to multiples of 16 and the last batch of every call has its own
number of rows, so serving meets up to 16 × 32 = 512 shapes; ``set_mkldnn_cache_capacity(32)`` keeps the
32 most recent. This feeds the forward pass directly (no tokenising) with 12 new short shapes, then one
full 16 × 512 batch (a long text), and then cycles through 24 (fits the cache) or 48 (does not) shapes.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from common import arguments, build_model, long_text, machine, progress, quiet_logs, size_name, table, temp_home

SHORT_SHAPES = [(rows, width) for width in (32, 48, 64, 80) for rows in (16, 7, 3)]
CYCLE_SHAPES = [(rows, width) for width in (32, 48, 64, 80, 96, 112) for rows in range(1, 9)]


def rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def forward_and_batches(model_dir: Path):
    """The serving forward pass, and a maker of batches of any shape (slices of one encoded long text)."""
    from paddlenlp.transformers import AutoTokenizer
    from uie_backend import inference, trainer

    item = trainer.encode({"content": long_text(600), "prompt": "人名", "result_list": []},
                          AutoTokenizer.from_pretrained(str(model_dir)), 512)

    def batch(rows: int, width: int):
        return [dataclasses.replace(item, input_ids=item.input_ids[:width],
                                    token_type_ids=item.token_type_ids[:width])] * rows

    return inference.StaticForward(model_dir, "cpu"), batch


def call_s(forward, batch) -> float:
    start = time.perf_counter()
    forward(batch)
    return time.perf_counter() - start


def measure(size: str, cycles: bool) -> list:
    with temp_home() as home:
        progress(f"{size}: building the model")
        forward, batch = forward_and_batches(build_model(size, home / "checkpoint"))
        loaded = rss_mb()
        extra_ms, grown = [], []
        progress(f"{size}: {len(SHORT_SHAPES)} new short shapes")
        for shape in SHORT_SHAPES:
            before = rss_mb()
            first = call_s(forward, batch(*shape))
            extra_ms.append((first - call_s(forward, batch(*shape))) * 1000)
            grown.append(rss_mb() - before)
        before = rss_mb()
        progress(f"{size}: one 16 × 512 batch")
        forward(batch(16, 512))
        long_mb = rss_mb() - before
        row = [size_name(size), f"{sum(grown) / len(grown):.0f}",
               f"{sum(extra_ms) / len(extra_ms):.0f}", f"{long_mb:.0f}"]
        if cycles:
            per_call = {}
            for count in (24, 48):
                progress(f"{size}: cycling through {count} shapes")
                shapes = CYCLE_SHAPES[:count]
                for shape in shapes:  # first pass: every shape is new either way
                    forward(batch(*shape))
                per_call[count] = sum(call_s(forward, batch(*s)) for s in shapes * 2) / (2 * count) * 1000
            row += [f"{per_call[24]:.0f}", f"{per_call[48]:.0f}", f"{per_call[48] / per_call[24]:.1f}×"]
        else:
            row += ["–", "–", "–"]
        row.append(f"{rss_mb() - loaded:.0f}")
    return row


def main() -> None:
    args = arguments(__doc__)
    quiet_logs()
    machine()
    print("Absolute numbers are noisy (shared 2-core machine); ratios are measured side by side in one run.")
    rows = [measure(size, cycles=not (args.quick and size == "base")) for size in args.size]
    table("Paddle Inference (oneDNN) per input shape, in one process: memory and first-call cost",
          ["model", "+MiB per new short shape", "first call of a new shape, extra ms",
           "+MiB for one 16×512 batch", "ms/call cycling 24 shapes (≤ cache)", "ms/call cycling 48 shapes (> cache 32)",
           "slowdown", "+MiB in all since load"], rows)


if __name__ == "__main__":
    main()
