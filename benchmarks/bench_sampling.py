"""What the time series (``sim.sample``) costs: CPU time of examples/overcommit.toml without
samples and with samples every 10 ms (the default) and every 1 ms, on both engines, in the
same process and interleaved (so the ratios are meaningful on a noisy machine).

    python benchmarks/bench_sampling.py [--mode kvm] [--duration 2s] [--repeat 3]

Reports the best CPU time of each setting over the repeats, its ratio to no sampling, and
the cost per sample.  The compiled core is warmed (compiled or loaded from the cache) first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pfsim

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("0", "10ms", "1ms")


def cpu_s(engine: str, mode: str, duration: str, sample: str) -> tuple[float, int]:
    config = pfsim.load_config(ROOT / "examples" / "overcommit.toml", overrides=[
        f"sim.engine={engine}", f"hypervisor.async_pf={mode}", f"sim.duration={duration}",
        f"sim.sample={sample}"])
    start = time.process_time()
    result = pfsim.run(config)
    taken = time.process_time() - start
    return taken, len(result.get("samples", {}).get("t_ns", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="kvm")
    parser.add_argument("--duration", default="2s")
    parser.add_argument("--reference-duration", default="200ms",
                        help="shorter: the reference engine is ~40x slower")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cpu_s("compiled", args.mode, "10ms", "1ms")  # warm the compiled core
    for engine, duration in (("compiled", args.duration), ("reference", args.reference_duration)):
        best: dict[str, float] = {}
        count: dict[str, int] = {}
        for _ in range(args.repeat):
            for sample in SAMPLES:
                taken, n = cpu_s(engine, args.mode, duration, sample)
                best[sample] = min(best.get(sample, taken), taken)
                count[sample] = n
        base = best["0"]
        print(f"{engine} {args.mode} {duration}: no samples {base:.3f} CPU s")
        for sample in SAMPLES[1:]:
            extra = best[sample] - base
            print(f"  sample {sample:>5}: {best[sample]:.3f} CPU s, ratio {best[sample] / base:.3f}, "
                  f"{count[sample]} samples, {1e6 * extra / max(1, count[sample]):.0f} us each")


if __name__ == "__main__":
    main()
