#!/usr/bin/env python3
"""The GPU comparison table: our engine (bench_gpu --json) against PyTorch
(bench/gpu/torch_bench.py --json), one markdown row per workload.

    compare.py --ours OURS.json --torch TORCH.json [--out TABLE.md]

Columns: our figure, each PyTorch variant's, the speed ratio against eager bf16 and
against the fastest PyTorch variant that ran (ratio = PyTorch time / our time, so above
1 we are faster), the goal and whether our figure meets it. Figures are per-call medians
(times), images/s for batch rows, and GB/s with % of the peak for the bandwidth rows
(the engine's byte model on both sides, so GB/s compares speed, not bytes moved). A row
whose check failed is marked "(check failed)"; errors, skips and failed checks are listed
under the table. A missing or unreadable PyTorch file leaves its columns empty.
"""
import argparse
import json
import sys

ROWS = ["decode_step_b64", "decode_step_b64_graph", "decoder_train_t20_b64", "decoder_train_step_t20_b64_graph",
        "cross_entropy_1280x10000", "adamw_21M",
        "greedy_1img", "beam3_1img", "resnet50_fwd_b256", "train_step_frozen_r50_b128",
        "train_step_finetune2_r50_b128"]
VARIANTS = ["eager_fp32", "eager_bf16", "compile"]
# The goals: our median time per call must not exceed these (milliseconds).
GOALS_MS = {"decode_step_b64": 0.030, "decode_step_b64_graph": 0.030, "decoder_train_t20_b64": 2.5, "greedy_1img": 1.5, "beam3_1img": 3.0}


def load(path):
    if not path:
        return None, "not given"
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, f"{path}: {e}"


def fmt_time(ms):
    return f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def cell(r):
    """The figure of one result row, or why there is none."""
    if r is None:
        return "—"
    status = r.get("status", "?")
    if status.startswith("skipped"):
        return "skipped"
    if status != "ok":
        return "error"
    ms = r["ms_median"]
    if "gbs" in r:
        text = f"{fmt_time(ms)}, {r['gbs']:.0f} GB/s ({r['pct_peak']:.0f}%)"
    elif r.get("throughput_unit") == "images/s":
        text = f"{r['throughput']:,.0f} img/s"
    else:
        text = fmt_time(ms)
    return text if r.get("check_ok") else text + " (check failed)"


def usable(r):
    return r is not None and r.get("status") == "ok" and r.get("ms_median", 0) > 0


def table(ours, torch_doc, torch_note):
    out = []
    meta_o = ours or {}
    meta_t = torch_doc or {}
    out.append("### GPU benchmark: engine vs PyTorch")
    out.append("")
    out.append(f"- ours: {meta_o.get('device', '?')}; {meta_o.get('precision', '?')}; "
               f"P={meta_o.get('positions', '?')}, V={meta_o.get('vocab', '?')}; {meta_o.get('date', '')}")
    if torch_doc:
        out.append(f"- PyTorch {meta_t.get('torch')} (CUDA {meta_t.get('cuda')}, cuDNN {meta_t.get('cudnn')}) on "
                   f"{meta_t.get('device')}; weights: {meta_t.get('weights')}; P={meta_t.get('positions')}")
        for name in VARIANTS:
            v = meta_t.get("variants", {}).get(name)
            if v:
                status = "" if v.get("status") == "ok" else f" — {v.get('status')}"
                out.append(f"  - {name}: {v.get('description', '')}{status}")
    else:
        out.append(f"- PyTorch: no results ({torch_note})")
    warnings = []
    if torch_doc and ours and meta_t.get("positions") != meta_o.get("positions"):
        warnings.append(f"positions differ: ours {meta_o.get('positions')}, PyTorch {meta_t.get('positions')}")
    if torch_doc and meta_t.get("tiny"):
        warnings.append("PyTorch ran with --tiny shapes: its figures are not comparable")
    if ours and str(meta_o.get("device", "")).startswith("cpu"):
        warnings.append("ours ran on the CPU (logic dry run): not a benchmark")
    if torch_doc and ours and meta_t.get("vocab") != meta_o.get("vocab"):
        warnings.append(f"vocabularies differ: ours {meta_o.get('vocab')}, PyTorch {meta_t.get('vocab')}")
    for w in warnings:
        out.append(f"- **WARNING: {w}**")
    out.append("- ratio = PyTorch time / our time (above 1: we are faster); per-call medians")
    out.append("")
    out.append("| row | ours | " + " | ".join(VARIANTS) + " | ours vs eager_bf16 | ours vs best PyTorch | goal | met |")
    out.append("|---|" + "---:|" * (1 + len(VARIANTS)) + "---:|---:|---|---|")
    notes = []
    met_count = missed_count = 0
    ours_rows = (ours or {}).get("rows", {})
    tv = (torch_doc or {}).get("variants", {})
    for name in ROWS:
        o = ours_rows.get(name)
        theirs = {v: tv.get(v, {}).get("rows", {}).get(name) for v in VARIANTS}
        if o is None and all(t is None for t in theirs.values()):
            continue
        cells = [cell(o)] + [cell(theirs[v]) for v in VARIANTS]
        vs_bf16 = vs_best = "—"
        if usable(o):
            if usable(theirs["eager_bf16"]):
                vs_bf16 = f"{theirs['eager_bf16']['ms_median'] / o['ms_median']:.2f}x"
            ran = {v: t["ms_median"] for v, t in theirs.items() if usable(t)}
            if ran:
                best = min(ran, key=ran.get)
                vs_best = f"{ran[best] / o['ms_median']:.2f}x ({best})"
        goal, met = "—", "—"
        if name in GOALS_MS:
            goal = f"<= {fmt_time(GOALS_MS[name])}"
            if usable(o):
                ok = o["ms_median"] <= GOALS_MS[name]
                met = "met" if ok else "missed"
                if not o.get("check_ok"):
                    met += " (unverified: check failed)"
                met_count += ok
                missed_count += not ok
            else:
                met = "n/a"
        out.append(f"| {name} | " + " | ".join(cells) + f" | {vs_bf16} | {vs_best} | {goal} | {met} |")
        for who, r in [("ours", o)] + [(f"PyTorch {v}", theirs[v]) for v in VARIANTS]:
            if r is None:
                continue
            if r.get("status", "ok") != "ok":
                notes.append(f"{name}, {who}: {r['status']}")
            elif not r.get("check_ok"):
                notes.append(f"{name}, {who}: check failed: {r.get('check')}")
    out.append("")
    out.append(f"Goals: {met_count} met, {missed_count} missed (of {len(GOALS_MS)}).")
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {n}" for n in notes)
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", required=True, help="bench_gpu --json output")
    ap.add_argument("--torch", help="torch_bench.py --json output")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    ours, why = load(args.ours)
    if ours is None:
        print(f"compare.py: our results are missing ({why})", file=sys.stderr)
        return 2
    theirs, torch_note = load(args.torch)
    text = table(ours, theirs, torch_note)
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
