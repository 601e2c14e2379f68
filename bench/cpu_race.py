#!/usr/bin/python3
"""The CPU speed race of the model against PyTorch (issue 3), in one run on one machine.

    bench/cpu_race.py [--build build] [--repeats 5] [--threads 2] [--rounds 1] [--json OUT]

Both sides get the same weights (a random ResNet-50 + decoder with V = 5000,
E = H = A = 512, written by weights-tools/reference_model.py as our checkpoint) and the
same inputs (images, precomputed features, captions of 20 words). PyTorch runs the
reference implementation of MODEL_SPEC (weights-tools/reference_model.py) in eager
float32 with `threads` threads; ours runs build/bench/bench_model with as many BLAS
threads. Rows (median milliseconds):
  encoder_b1 / encoder_b8   ResNet-50 trunk + pooling, 224x224, no grad (ours as `caption`
                            runs it: batch norms folded once, nn/folded_resnet.h)
  decoder_step_b32          one decoding step for 32 rows (attention, LSTM, fc, log-softmax)
  train_step_b32            teacher-forced decoder training step on precomputed features:
                            forward, loss, backward, AdamW (dropout 0.5 on)
  greedy_caption_1img       encoder + greedy decoding of up to 20 words, one image
Prints a table with the ratio PyTorch / ours (> 1: we are faster). With CAPTION_PROFILE=1
our side also prints each row's ops by time (engine/profile.h) on stderr.

Both sides flush denormal numbers to zero (ours by default, CAPTION_FLUSH_DENORMALS;
PyTorch through torch.set_flush_denormal, set alike), so that neither pays the
processor's slow path for values below 1.2e-38 that the training step's gradients
reach (bench/NOTES.md, eleventh session).

--rounds R alternates the two sides R times (ours, PyTorch, ours, ...) and reports per
row the median of the rounds' medians, with the fastest round beside it: on a shared
machine whose speed drifts within minutes (bench/NOTES.md, eleventh session) a slow
stretch then moves both sides alike instead of deciding a row.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights-tools"))
import reference_model as rm  # noqa: E402
import safetensors_io  # noqa: E402

V, B, WORDS = 5000, 32, 20


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def pytorch_rows(model, images1, images8, features, captions, lengths, step_tokens, repeats):
    """PyTorch's median milliseconds of each row (the reference model, eager float32)."""
    dec = model.decoder
    theirs = {}
    with torch.no_grad():
        theirs["encoder_b1"] = median_ms(lambda: model.encoder(images1), repeats)
        theirs["encoder_b8"] = median_ms(lambda: model.encoder(images8), max(1, repeats // 2))
        h, c, enc_proj = dec.init_state(features)
        theirs["decoder_step_b32"] = median_ms(
            lambda: torch.log_softmax(dec.fc(dec.step(step_tokens, h, c, features, enc_proj)[0]), 1),
            repeats * 4)
    dec.train()
    opt = torch.optim.AdamW(dec.parameters(), lr=1e-3, weight_decay=0.01)

    def train_step():
        opt.zero_grad()
        logits, alphas = dec(features, captions, lengths)
        rm.caption_loss(logits, alphas, captions, lengths, 1.0)[0].backward()
        opt.step()
    theirs["train_step_b32"] = median_ms(train_step, repeats)
    dec.eval()
    theirs["greedy_caption_1img"] = median_ms(lambda: rm.greedy_decode(dec, model.encoder(images1), WORDS),
                                              repeats)
    return theirs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        ap.error("--rounds and --repeats must be at least 1")
    torch.set_num_threads(args.threads)
    flush_denormals = os.environ.get("CAPTION_FLUSH_DENORMALS", "1") != "0"
    torch.set_flush_denormal(flush_denormals)
    torch.manual_seed(0)

    config = rm.make_config(vocab_size=V)
    model = rm.CaptionModel(config, V).eval()
    vocab = rm.SPECIAL_TOKENS + [f"w{i}" for i in range(V - rm.NUM_SPECIAL)]
    gen = torch.Generator().manual_seed(1)
    images8 = torch.randn(8, 3, 224, 224, generator=gen)
    images1 = images8[:1].contiguous()
    with torch.no_grad():
        features = model.encoder(images8[:1]).repeat(B, 1, 1) + 0.1 * torch.randn(B, 196, 2048, generator=gen)
    captions = torch.randint(rm.NUM_SPECIAL, V, (B, WORDS + 2), generator=gen)
    captions[:, 0] = rm.SOS
    captions[:, -1] = rm.EOS
    lengths = torch.full((B,), WORDS + 2, dtype=torch.int64)
    step_tokens = torch.randint(rm.NUM_SPECIAL, V, (B,), generator=gen)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "model.safetensors")
        inputs = os.path.join(tmp, "inputs.safetensors")
        safetensors_io.save(ckpt, rm.checkpoint_tensors(model), rm.checkpoint_metadata(config, vocab))
        safetensors_io.save(inputs, {"images1": images1.numpy(), "images8": images8.numpy(),
                                     "features": features.numpy(), "captions": captions.numpy(),
                                     "lengths": lengths.numpy(), "step_tokens": step_tokens.numpy()})
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
        exe = os.path.join(args.build, "bench", "bench_model")
        ours_rounds, theirs_rounds = [], []
        for _ in range(args.rounds):
            out = subprocess.run([exe, "--checkpoint", ckpt, "--inputs", inputs, "--repeats", str(args.repeats)],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"cpu_race: {exe} failed:\n{out.stderr}")
            if os.environ.get("CAPTION_PROFILE") == "1":  # our rows' op profiles (engine/profile.h)
                sys.stderr.write(out.stderr)
            ours_rounds.append(json.loads(out.stdout.strip().splitlines()[-1]))
            theirs_rounds.append(pytorch_rows(model, images1, images8, features, captions, lengths,
                                              step_tokens, args.repeats))

    blas_core = ours_rounds[0].get("blas_core", "")
    folded = ours_rounds[0].get("folded_encoder")  # our encoder's batch norms folded once (nn/folded_resnet.h)
    rounds = f", {args.rounds} rounds (median of the rounds, fastest in brackets)" if args.rounds > 1 else ""
    print(f"CPU race, {args.threads} threads, torch {torch.__version__}, median of {args.repeats}{rounds}, "
          f"our BLAS kernels {blas_core or '?'}, denormals {'flushed' if flush_denormals else 'kept'}"
          + ("" if folded is None else f", our encoder {'folded once' if folded else 'unfolded (CAPTION_FOLD_BN=0)'}"))
    width = 20 if args.rounds > 1 else 11
    print(f"{'row':24s} {'ours ms':>{width}s} {'PyTorch ms':>{width}s} {'ratio':>7s}")
    rows = {}
    for k in ["encoder_b1", "encoder_b8", "decoder_step_b32", "train_step_b32", "greedy_caption_1img"]:
        ours_k = [r[k] for r in ours_rounds]
        theirs_k = [r[k] for r in theirs_rounds]
        ours, theirs = statistics.median(ours_k), statistics.median(theirs_k)
        ratio = theirs / ours
        rows[k] = {"ours_ms": ours, "pytorch_ms": theirs, "ratio": ratio,
                   "ours_rounds_ms": ours_k, "pytorch_rounds_ms": theirs_k}
        cells = [f"{v:.2f}" + (f" [{min(vs):.2f}]" if args.rounds > 1 else "")
                 for v, vs in ((ours, ours_k), (theirs, theirs_k))]
        print(f"{k:24s} {cells[0]:>{width}s} {cells[1]:>{width}s} {ratio:6.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "repeats": args.repeats,
                       "rounds": args.rounds, "rows": rows,
                       "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
                       "blas_core": blas_core, "flush_denormals": flush_denormals,
                       "folded_encoder": folded}, f, indent=1)


if __name__ == "__main__":
    main()
