"""Line counts on lines the counter was not tuned on: the error of every line's total, per scenario.

    python benchmarks/count_accuracy.py [--quick] [--hours H] [--seeds 300-309]

Every scenario of ``services.lines.scenarios.SCENARIOS`` (frame rate, slide duration, an empty view or one that
never empties, early bin changes, trays taken out, occlusion growing with the pile, missed and false
detections, flicker, camera shakes, outages, irregular frame timing, two cameras on one line, busy and slow
lines) is drawn for ``--hours`` (8; 1 with --quick) per seed and counted with the default
``CounterParams``. The counter's settings were chosen on the scenarios marked ``tune`` and checked on every
scenario at development seeds 0-2 and 10-39. Seeds 100-102 and 200-202 were report seeds once and have been
looked at (200-202 showed a camera shake just before a slide, and outage bins counted at their lower end,
which were then fixed on seeds 10-39); the default report seeds, 300-309, were not looked at while choosing
anything. Per scenario: the true trays, the mean and worst signed error of the seeds' totals and how many
are within 1%, how often the truth lies in the estimated range (bins an outage hid are estimated, with a
range), and the naive counter's mean error. The last line is one JSON object: ``scenarios`` (name -> worst
absolute error, mean error, tuned, lines within 1%), ``worst_abs_error``, ``mean_abs_error`` and
``lines_within_1pct`` over the scenarios not tuned on, and the worst over all.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from common import ROOT  # noqa: F401  (puts the repository on sys.path)

from services.lines.counter import CounterParams, count_frames, naive_count, total_trays
from services.lines.scenarios import SCENARIOS, generate


def run_scenario(name: str, *, hours: float, seeds: list[int]) -> dict[str, object]:
    behaviour, tuned = SCENARIOS[name]
    errors, naive, in_range, truth_total, est_bins, bins_total = [], [], [], 0, 0, 0
    for seed in seeds:
        line = generate(behaviour, hours=hours, seed=seed)
        bins, state = count_frames(line.ts, line.counts, params=CounterParams())
        truth = sum(line.truth)
        got = total_trays(state)
        open_trays = got - state.total
        errors.append((got - truth) / truth)
        naive.append((naive_count(line.counts) - truth) / truth)
        in_range.append(state.total_low + open_trays <= truth <= state.total_high + open_trays)
        truth_total += truth
        est_bins += state.estimated_bins
        bins_total += len(bins)
    return {"tuned": tuned, "truth": truth_total, "errors": errors, "worst": max(abs(e) for e in errors),
            "mean": float(np.mean(errors)), "naive_mean": float(np.mean(naive)), "in_range": in_range,
            "estimated_bins": est_bins, "bins": bins_total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 hour per seed, two seeds")
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--seeds", default="300-309", help="a range a-b or a comma list")
    args = ap.parse_args()
    hours = args.hours or (1.0 if args.quick else 8.0)
    if "-" in args.seeds:
        a, b = (int(x) for x in args.seeds.split("-"))
        seeds = list(range(a, b + 1))
    else:
        seeds = [int(x) for x in args.seeds.split(",")]
    seeds = seeds[: 2 if args.quick else None]
    t0 = time.perf_counter()
    results = {}
    print(f"{'scenario':32s} {'set':>8s} {'trays':>8s} {'bins':>6s} {'est':>4s} {'mean':>7s} {'worst':>7s} "
          f"{'<=1%':>6s} {'naive':>7s}  in range")
    for name in SCENARIOS:
        r = run_scenario(name, hours=hours, seeds=seeds)
        results[name] = r
        worst = max(r["errors"], key=abs)
        within = sum(abs(e) <= 0.01 for e in r["errors"])
        print(f"{name:32s} {'tuning' if r['tuned'] else 'held-out':>8s} {r['truth']:8d} {r['bins']:6d} "
              f"{r['estimated_bins']:4d} {100 * r['mean']:+6.2f}% {100 * worst:+6.2f}% {within:3d}/{len(seeds):<2d} "
              f"{100 * r['naive_mean']:+6.1f}%  {sum(r['in_range'])}/{len(r['in_range'])}", flush=True)
    held = [r for r in results.values() if not r["tuned"]]
    out = {
        "hours": hours, "seeds": seeds,
        "scenarios": {k: {"worst_abs_error": round(r["worst"], 5), "mean_error": round(r["mean"], 5),
                          "tuned": r["tuned"], "truth_in_range": sum(r["in_range"]),
                          "within_1pct": sum(abs(e) <= 0.01 for e in r["errors"]),
                          "estimated_bins": r["estimated_bins"]} for k, r in results.items()},
        "worst_abs_error": round(max(r["worst"] for r in held), 5),
        "mean_abs_error": round(float(np.mean([abs(e) for r in held for e in r["errors"]])), 5),
        "worst_abs_error_all": round(max(r["worst"] for r in results.values()), 5),
        "within_1pct": sum(r["worst"] <= 0.01 for r in held), "held_out_scenarios": len(held),
        "lines_within_1pct": sum(abs(e) <= 0.01 for r in held for e in r["errors"]),
        "held_out_lines": sum(len(r["errors"]) for r in held),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
