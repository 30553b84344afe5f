#!/usr/bin/env python3
"""Ratio table of seg256: bench_seg256 (ours) against the best PyTorch mode of each row.

Reads the JSON files written by `bench_seg256 --json` and `pytorch_seg256.py --json` (one or
more: several PyTorch builds, e.g. Debian's 1.13 and a 2.x wheel), and for every (batch,
precision) row of ours picks the PyTorch build and mode with the lowest median ms/step.
ratio = ours / best PyTorch (ms; below 1 is faster), speedup = its inverse, memory ratio =
our peak / that mode's peak. The targets are BENCHMARK.md's: speedup >= 5 at batch 1, >= 1.5
at batch 16 and 64, peak memory <= PyTorch's; --target-speedup X sets one target for every row
(issue 20's CPU target is 2). Standard library only.

Usage: compare_seg256.py OURS.json TORCH.json [TORCH2.json ...] [--target-speedup X] [--markdown FILE]
"""

import argparse
import json
import sys

CONFIG_KEYS = ("size", "num_downs", "ngf", "ndf", "input_sets")


TARGET_OVERRIDE = None


def speedup_target(batch):
    if TARGET_OVERRIDE is not None:
        return TARGET_OVERRIDE
    return 5.0 if batch == 1 else 1.5


def load(path):
    with open(path) as f:
        return json.load(f)


def measured(row):
    return row.get("ok") and isinstance(row.get("ms_median"), (int, float))


def compare(ours, torch_docs):
    """One dict per row of ours, in ours' order; the best row over every PyTorch document."""
    out = []
    for row in ours["rows"]:
        key = (row["batch"], row["precision"])
        candidates = [
            dict(r, mode=f"{r['mode']} ({doc.get('torch')})" if len(torch_docs) > 1 else r["mode"])
            for doc in torch_docs
            for r in doc["rows"]
            if (r["batch"], r["precision"]) == key and measured(r)
        ]
        best = min(candidates, key=lambda r: r["ms_median"]) if candidates else None
        entry = {"batch": key[0], "precision": key[1], "ours": row, "torch": best}
        if measured(row) and best:
            entry["ratio"] = row["ms_median"] / best["ms_median"]
            entry["speedup"] = best["ms_median"] / row["ms_median"]
            entry["speed_ok"] = entry["speedup"] >= speedup_target(key[0])
            ours_peak, torch_peak = row.get("peak_mem_bytes"), best.get("peak_mem_bytes")
            if ours_peak and torch_peak:  # absent or 0 where a side does not track memory (CPU)
                entry["mem_ratio"] = ours_peak / torch_peak
                entry["mem_ok"] = entry["mem_ratio"] <= 1.0
        out.append(entry)
    return out


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table_lines(entries, markdown):
    head = [
        "batch",
        "precision",
        "ours ms",
        "best PyTorch ms",
        "PyTorch mode",
        "ours/PyTorch",
        "speedup (target)",
        "ours MiB",
        "PyTorch MiB",
        "mem ratio",
        "ours TFLOP/s",
    ]
    rows = []
    for e in entries:
        o, t = e["ours"], e["torch"]
        speed = "-"
        if "speedup" in e:
            mark = "met" if e["speed_ok"] else "not met"
            speed = f"{e['speedup']:.2f}x (>= {speedup_target(e['batch']):g}x, {mark})"
        mem = "-"
        if "mem_ratio" in e:
            mem = f"{e['mem_ratio']:.2f}" + ("" if e["mem_ok"] else " (over)")
        rows.append(
            [
                str(e["batch"]),
                e["precision"],
                fmt(o.get("ms_median"), ".3f") if measured(o) else "failed",
                fmt(t["ms_median"], ".3f") if t else "none",
                t["mode"] if t else "-",
                fmt(e.get("ratio"), ".3f"),
                speed,
                fmt(o.get("peak_mem_mib"), ".0f"),
                fmt(t.get("peak_mem_mib"), ".0f") if t else "-",
                mem,
                fmt(o.get("tflops"), ".3g"),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return lines
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head] + rows]


def config_warnings(ours, torch_doc):
    warnings = []
    for k in CONFIG_KEYS:
        if ours.get(k) != torch_doc.get(k):
            warnings.append(f"{k} differs: ours {ours.get(k)}, PyTorch {torch_doc.get(k)}")
    a, b = ours.get("gflop_per_image"), torch_doc.get("gflop_per_image")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) > 1e-6 * max(a, b):
        warnings.append(f"GFLOP per image differs: ours {a:.4f}, PyTorch {b:.4f}")
    if min(ours.get("repeats", 0), torch_doc.get("repeats", 0)) < 5:
        warnings.append("fewer than 5 repeats on one side: not a measurement")
    return warnings


def main():
    ap = argparse.ArgumentParser(description="seg256: ours / best PyTorch per row")
    ap.add_argument("ours", help="JSON from bench_seg256 --json")
    ap.add_argument("torch", nargs="+", help="JSON from pytorch_seg256.py --json (one per PyTorch build)")
    ap.add_argument("--target-speedup", type=float, help="one speedup target for every row")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = ap.parse_args()
    global TARGET_OVERRIDE
    TARGET_OVERRIDE = args.target_speedup

    ours, torch_docs = load(args.ours), [load(p) for p in args.torch]
    entries = compare(ours, torch_docs)
    builds = ", ".join(f"{d.get('torch')} on {d.get('device')}" for d in torch_docs)
    print(
        f"seg256 {ours.get('size')}x{ours.get('size')}, ngf {ours.get('ngf')}, ndf "
        f"{ours.get('ndf')}: ours on {ours.get('device')} (step {ours.get('step')}, conv backend "
        f"{ours.get('conv_backend')}), PyTorch {builds}"
    )
    for torch_doc in torch_docs:
        for w in config_warnings(ours, torch_doc):
            print(f"warning ({torch_doc.get('torch')}): " + w)
    print("\n".join(table_lines(entries, markdown=False)))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table_lines(entries, markdown=True)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
