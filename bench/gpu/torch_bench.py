#!/usr/bin/env python3
"""PyTorch side of the GPU benchmark: the rows of bench/gpu_bench.cpp, same shapes, same
weights (the checkpoint bench_gpu --save-checkpoint writes), on PyTorch.

    torch_bench.py [--checkpoint FILE] [--json FILE] [--device cuda|cpu] [--only ROWS]
                   [--variants eager_fp32,eager_bf16,compile] [--quick] [--repeats N]
                   [--time-budget S] [--peak-gbs GBS] [--positions 196|49] [--tiny]
                   [--compile-mode default]

The model is weights-tools/reference_model.py (our PyTorch reference of MODEL_SPEC),
imported by path. What is PyTorch's own and not the reference's: the teacher-forced
training forward and greedy/beam decoding are written here, device-aware (the reference
builds masks and indices on the CPU and reads numpy arrays, so it runs on the CPU only),
with the same modules and the same arithmetic. Like the engine, the training forward
looks up all embeddings at once and runs the vocabulary projection once over all 20
steps (the stronger baseline); masks and the flat indices of valid (b, t) come with the
batch (lengths are host data, as from a loader), so no step synchronises the host.

Variants (each a column of the comparison):
  eager_fp32  eager, float32, TF32 off for products and convolutions
  eager_bf16  eager; inference on a bfloat16 copy of the model, training under bfloat16
              autocast (float32 master weights); channels_last encoder and images;
              torch.optim.AdamW(fused=True) where this torch has it; TF32 on
  compile     eager_bf16 with torch.compile(mode=--compile-mode) on the encoder, the
              decoder step, the training loss, the cross-entropy and the AdamW step;
              skipped with the reason where torch < 2 or compilation fails, and row by
              row when the compile would not fit --time-budget
cuDNN's benchmark mode is on in every variant (the engine's run sets
CAPTION_CUDNN_BENCHMARK=1 too).

Timing: warm-up, then samples of `calls` consecutive calls between two CUDA events
(perf_counter on the CPU), after a synchronize; per-call median, p10, p90 over as many
samples as fit a per-row target time. Inputs rotate over several sets as in
gpu_bench.cpp and are never zeros. Each row is checked before it is timed (see CHECKS
below); results are written after every row so a cut-short run keeps what it finished.

--positions 49 pools the encoder to 7x7 (P = 49) for every row: what PyTorch would gain
from the same change the engine may make later; the default, 196, matches the engine.
--tiny shrinks every batch (and the images to 64x64) so that all code paths run on a
CPU in seconds: a test of this script, not a benchmark (compare.py flags it).
"""
import argparse
import copy
import itertools
import json
import math
import os
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "weights-tools"))
import reference_model as rm  # noqa: E402

ROWS = ["decode_step_b64", "decoder_train_t20_b64", "cross_entropy_1280x10000", "adamw_21M",
        "greedy_1img", "beam3_1img", "resnet50_fwd_b256", "train_step_frozen_r50_b128",
        "train_step_finetune2_r50_b128"]
VARIANTS = ["eager_fp32", "eager_bf16", "compile"]
GOALS_MS = {"decode_step_b64": 0.030, "decoder_train_t20_b64": 2.5, "greedy_1img": 1.5,
            "beam3_1img": 3.0}
# Rough cold-compile seconds per row (inductor, one H100 machine, empty cache): a compile
# row is skipped rather than started when this plus its timing does not fit the budget.
COMPILE_COST_S = {"decode_step_b64": 25, "decoder_train_t20_b64": 90, "cross_entropy_1280x10000": 15,
                  "adamw_21M": 40, "greedy_1img": 80, "beam3_1img": 40, "resnet50_fwd_b256": 70,
                  "train_step_frozen_r50_b128": 150, "train_step_finetune2_r50_b128": 180}
WORDS = 20        # decode steps (19 words + <eos> in training, 20 words when decoding)
MODEL_SEED = 20261127


class Skip(Exception):
    """A row that is not run, with the reason."""


# ---- timing --------------------------------------------------------------------------------

class Timer:
    def __init__(self, device, args, start):
        self.device, self.args, self.start = device, args, start

    def remaining(self):
        if self.args.time_budget <= 0:
            return 1e9
        return self.args.time_budget - (time.monotonic() - self.start)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(self, calls, fn):
        """fn(i) for i = 0, 1, ...; per-call milliseconds over samples of `calls` calls."""
        counter = itertools.count()

        def sample():
            self.sync()
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(calls):
                    fn(next(counter))
                end.record()
                end.synchronize()
                return start.elapsed_time(end) / calls
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(next(counter))
            return (time.perf_counter() - t0) * 1e3 / calls

        a = self.args
        last = 0.0
        for _ in range(1 if a.quick else 3):
            last = sample()
        per_sample_s = max(last * calls * 1e-3, 1e-6)
        target, lo, hi = (0.3, 3, 20) if a.quick else (1.5, 10, 200)
        n = a.repeats if a.repeats > 0 else min(max(int(target / per_sample_s), lo), hi)
        fit = (self.remaining() - 5) / per_sample_s
        if fit < n:
            n = max(3, int(fit))
        t = sorted(sample() for _ in range(n))

        def pct(q):
            return t[int(round(q * (n - 1)))]
        return {"ms_median": pct(0.5), "ms_p10": pct(0.1), "ms_p90": pct(0.9), "samples": n,
                "calls_per_sample": calls}


# ---- the model -------------------------------------------------------------------------------

def calibrate_batch_norm(encoder, image_size, seed):
    """As the engine's CaptionModel::calibrate_batch_norm: running statistics = the average
    over two batches of two random images (used only without a checkpoint)."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for m in encoder.modules():
        m.training = True  # rm.Encoder.train() would keep frozen batch norm in eval
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(2):
            encoder(torch.randn(2, 3, image_size, image_size, generator=g))
    for m in norms:
        m.momentum = 0.1
    encoder.set_fine_tune(encoder.fine_tune)
    encoder.eval()


def load_model(args):
    """(model fp32 on the CPU, config, vocabulary, where the weights came from)."""
    if args.checkpoint and os.path.exists(args.checkpoint):
        model, config, vocab = rm.load_checkpoint(args.checkpoint)
        source = f"checkpoint {args.checkpoint} (the engine's weights)"
    else:
        torch.manual_seed(MODEL_SEED)
        V = args.vocab
        vocab = rm.SPECIAL_TOKENS + [f"w{i}" for i in range(rm.NUM_SPECIAL, V)]
        config = rm.make_config(vocab_size=V)
        model = rm.CaptionModel(config, V)
        calibrate_batch_norm(model.encoder, config["image_size"], MODEL_SEED + 1)
        with torch.no_grad():  # as bench_gpu: decoding never stops early
            model.decoder.fc.bias[:rm.NUM_SPECIAL] = -50.0
        why = "not found" if args.checkpoint else "not given"
        source = f"random (seed {MODEL_SEED}; checkpoint {why})"
    if args.positions != config["encoder_size"] ** 2:
        S = int(round(math.sqrt(args.positions)))
        model.encoder.pool = nn.AdaptiveAvgPool2d((S, S))
        model.encoder.encoder_size = S
        config = dict(config, encoder_size=S)
    return model.eval(), config, vocab, source


def step_fn(dec):
    """One decoding step as the engine's AttentionDecoder::step: log-probabilities, alpha."""
    def step(tokens, h, c, features, enc_proj):
        h, c, alpha = dec.step(tokens, h, c, features, enc_proj)
        return torch.log_softmax(dec.fc(h), dim=1), alpha, h, c
    return step


class Batch:
    """Captions of 21 tokens (<sos>, 19 words, <eos>) with what the loss needs, on device."""

    def __init__(self, B, V, gen, device):
        L = WORDS + 1
        cap = torch.randint(rm.NUM_SPECIAL, V, (B, L), generator=gen)
        cap[:, 0], cap[:, -1] = rm.SOS, rm.EOS
        lengths = torch.full((B,), L, dtype=torch.int64)
        T = int(lengths.max()) - 1
        valid = torch.arange(T).unsqueeze(0) < (lengths - 1).unsqueeze(1)  # [B, T]
        self.captions = cap.to(device)
        self.valid = valid.to(device)
        self.sel = valid.reshape(-1).nonzero().squeeze(1).to(device)      # valid flat (b, t)
        self.targets = cap[:, 1:T + 1].reshape(-1)[valid.reshape(-1)].to(device)
        self.T = T

    def rows(self, n):
        b = copy.copy(self)
        b.captions, b.valid = self.captions[:n], self.valid[:n]
        b.sel = self.sel[self.sel < n * self.T]
        b.targets = self.targets[:b.sel.numel()]
        return b


def teacher_forced_loss(dec, features, batch, alpha_c=1.0):
    """MODEL_SPEC section 5 over a batch: cross-entropy of valid steps + attention term."""
    T = batch.T
    h, c, enc_proj = dec.init_state(features)
    emb = dec.embedding(batch.captions[:, :T])                   # [B, T, E]
    hs, alphas = [], []
    for t in range(T):
        alpha, z = dec.attend(h, features, enc_proj)
        h, c = dec.lstm(torch.cat([emb[:, t], z.to(emb.dtype)], dim=1), (h, c))
        hs.append(h)
        alphas.append(alpha)
    logits = dec.fc(dec.dropout(torch.stack(hs, dim=1)))         # [B, T, V]
    logits = logits.reshape(-1, logits.shape[-1]).index_select(0, batch.sel)
    alphas = torch.stack(alphas, dim=1) * batch.valid.unsqueeze(2)
    ce = F.cross_entropy(logits.float(), batch.targets)
    return ce + alpha_c * ((1.0 - alphas.float().sum(dim=1)) ** 2).mean()


@torch.no_grad()
def greedy_caption(step, dec, features, max_len):
    """The reference's greedy decoding (rm.greedy_decode) for one image, device-aware:
    one read-back per step (token, its log-probability, the attention row)."""
    h, c, enc_proj = dec.init_state(features)
    tokens = torch.full((features.shape[0],), rm.SOS, dtype=torch.int64, device=features.device)
    out = rm.Decoded()
    for _ in range(max_len):
        lp, alpha, h, c = step(tokens, h, c, features, enc_proj)
        best_lp, best = lp.max(dim=1)
        host = torch.cat([best.double(), best_lp.double(), alpha[0].double()]).cpu()
        token = int(host[0])
        out = out.extended(token, float(host[1]), host[2:].numpy())
        if token == rm.EOS:
            break
        tokens = best
    return out


@torch.no_grad()
def beam_caption(step, dec, features, beam, max_len):
    """rm.beam_search's shrinking beam for one image, device-aware: the top extensions
    are chosen on the device (torch.topk; exact ties may order differently from the
    reference's index rule), one read-back per step."""
    h, c, enc_proj = dec.init_state(features)
    state = (h, c, features, enc_proj)
    live, finished = [rm.Decoded()], []
    tokens = torch.tensor([rm.SOS], dtype=torch.int64, device=features.device)
    for _ in range(max_len):
        if not live or len(finished) >= beam:
            break
        lp, alpha, h, c = step(tokens, *state)
        state = (h, c) + state[2:]
        V = lp.shape[1]
        base = torch.tensor([d.score for d in live], dtype=torch.float64, device=lp.device)
        scores = (base.unsqueeze(1) + lp.double()).reshape(-1)
        want = min(beam - len(finished), scores.numel())
        top = scores.topk(want).indices
        host = torch.cat([top.double(), lp.reshape(-1)[top].double(), alpha.double().reshape(-1)]).cpu()
        P = alpha.shape[1]
        alphas = host[2 * want:].reshape(-1, P).numpy()
        next_live, rows, next_tokens = [], [], []
        for j in range(want):
            hyp, token = divmod(int(host[j]), V)
            d = live[hyp].extended(token, float(host[want + j]), alphas[hyp].copy())
            if token == rm.EOS:
                finished.append(d)
            else:
                next_live.append(d)
                rows.append(hyp)
                next_tokens.append(token)
        live = next_live
        if live:
            index = torch.tensor(rows, dtype=torch.int64, device=lp.device)
            state = tuple(s.index_select(0, index) for s in state)
            tokens = torch.tensor(next_tokens, dtype=torch.int64, device=lp.device)
    pool = finished or live
    return max(pool, key=lambda d: d.score)


# ---- one variant ------------------------------------------------------------------------------

class Variant:
    """How a variant runs: precision, memory format, optimiser, compilation."""

    def __init__(self, name, device, args):
        self.name, self.device, self.args = name, device, args
        self.bf16 = name in ("eager_bf16", "compile")
        self.compile = name == "compile"
        self.channels_last = self.bf16
        self.fused = False
        if self.bf16 and device.type == "cuda" and int(torch.__version__.split(".")[0]) >= 2:
            self.fused = "fused" in torch.optim.AdamW.__init__.__code__.co_varnames
        self._compiled = {}

    def describe(self):
        parts = {"eager_fp32": "eager, float32, TF32 off",
                 "eager_bf16": "eager, bf16 inference copy / bf16 autocast training, channels_last",
                 "compile": f"torch.compile(mode={self.args.compile_mode}) over eager_bf16"}[self.name]
        opt = "AdamW(fused=True)" if self.fused else "AdamW (default implementation)"
        return f"{parts}; {opt}"

    def set_precision(self):
        tf32 = self.bf16
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True

    def autocast(self):
        if not self.bf16:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def maybe_compile(self, key, fn):
        """fn itself, or its compiled version (cached by key) in the compile variant."""
        if not self.compile:
            return fn
        if key not in self._compiled:
            self._compiled[key] = torch.compile(fn, mode=None if self.args.compile_mode == "default"
                                                else self.args.compile_mode)
        return self._compiled[key]

    def inference_model(self, base):
        m = copy.deepcopy(base).to(self.device).eval()
        if self.bf16:
            m = m.to(torch.bfloat16)
        if self.channels_last:
            m.encoder.to(memory_format=torch.channels_last)
        return m

    def training_model(self, base):
        m = copy.deepcopy(base).to(self.device)
        if self.channels_last:
            m.encoder.to(memory_format=torch.channels_last)
        return m

    def images(self, t):
        t = t.to(torch.bfloat16) if self.bf16 else t
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def adamw(self, params, lr=4e-4, fused=None):
        """The config's AdamW (weight decay 0.01); fused where the variant has it."""
        kw = {"fused": True} if (self.fused if fused is None else fused) else {}
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01, **kw)


def variants_of(shape, lo, hi, sets, gen, device, dtype=torch.float32):
    """`sets` distinct non-zero tensors from one draw: x * (1 + 0.1 k) + 0.01 k."""
    base = (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(device)
    return [(base * (1 + 0.1 * k) + 0.01 * k).to(dtype) for k in range(sets)]


def compare(checks, what, err, tol):
    ok = err <= tol  # False for NaN
    checks.append(f"{what} {err:.2e} (tol {tol:.0e}{')' if ok else ' FAIL)'}")
    return ok


class Bench:
    def __init__(self, args, device, base, config, timer):
        self.args, self.device, self.base, self.config, self.timer = args, device, base, config, timer
        self.V = base.decoder.vocab_size
        self.P = config["encoder_size"] ** 2
        self.D = rm.encoder_channels(int(config["encoder"].removeprefix("resnet")))
        self.S = 64 if args.tiny else config["image_size"]
        self.gen = torch.Generator().manual_seed(MODEL_SEED + 2)
        self.cpu_ref = base  # float32 on the CPU: the reference of every check
        t = args.tiny
        self.B = {"decode": 4 if t else 64, "train": 4 if t else 64, "ce": 64 if t else 1280,
                  "fwd": 2 if t else 256, "step": 2 if t else 128}

    # -- rows ------------------------------------------------------------------------------
    def decode_step_b64(self, v, row):
        B = self.B["decode"]
        row["shape"] = f"decoder step, K={B}, P={self.P}, D={self.D}, V={self.V}"
        m = self.inference_model(v)
        dec = m.decoder
        dtype = next(dec.parameters()).dtype
        feats = variants_of([B, self.P, self.D], 0.0, 2.0, 3, self.gen, self.device, dtype)
        tokens = [torch.randint(rm.NUM_SPECIAL, self.V, (B,), generator=self.gen).to(self.device)
                  for _ in feats]
        step = v.maybe_compile("step", step_fn(dec))
        with torch.no_grad():
            states = [dec.init_state(f) for f in feats]
            lp, alpha, _, _ = step(tokens[0], states[0][0], states[0][1], feats[0], states[0][2])
            ref = self.cpu_ref.decoder
            h, c, e = ref.init_state(feats[0][:4].float().cpu())
            rlp, ralpha, _, _ = step_fn(ref)(tokens[0][:4].cpu(), h, c, feats[0][:4].float().cpu(), e)
            checks = []
            ok = compare(checks, "log_probs vs CPU fp32 max|d|", (lp[:4].float().cpu() - rlp).abs().max().item(),
                         1e-3 if not v.bf16 else 0.5)
            ok &= compare(checks, "alpha max|d|", (alpha[:4].float().cpu() - ralpha).abs().max().item(),
                          1e-5 if not v.bf16 else 5e-3)
        row["check"], row["check_ok"] = ", ".join(checks), ok

        def call(i):
            k = i % len(feats)
            h, c, e = states[k]
            with torch.no_grad():
                step(tokens[k], h, c, feats[k], e)
        row.update(self.timer.measure(WORDS, call))
        row["throughput"], row["throughput_unit"] = 1e3 / row["ms_median"], "steps/s"
        row["goal_ms"] = GOALS_MS["decode_step_b64"]

    def _train_check(self, v, m, images_or_feats, batch, n, encode):
        """Loss of an n-row slice in eval mode (no dropout), computed eagerly in the
        variant's precision (a compiled function would recompile for eval mode), against
        the CPU float32 reference."""
        ref = self.cpu_ref
        m.eval()
        with torch.no_grad():
            x = images_or_feats[:n]
            with v.autocast():
                got = teacher_forced_loss(m.decoder, m.encoder(x) if encode else x, batch.rows(n)).float().item()
            rb = batch.rows(n)
            cpu_batch = copy.copy(rb)
            for name in ("captions", "valid", "sel", "targets"):
                setattr(cpu_batch, name, getattr(rb, name).cpu())
            xr = x.float().cpu()
            want = teacher_forced_loss(ref.decoder, ref.encoder(xr) if encode else xr, cpu_batch).item()
        m.train()
        checks = []
        ok = compare(checks, f"{n}-row slice (eval): loss rel err vs CPU fp32", abs(got - want) / abs(want),
                     1e-4 if not v.bf16 else 3e-2)
        return checks, ok

    def decoder_train_t20_b64(self, v, row):
        B = self.B["train"]
        row["shape"] = f"decoder fwd + loss + bwd, features [{B},{self.P},{self.D}], 20 steps, dropout 0.5"
        m = v.training_model(self.base)
        m.encoder.set_fine_tune("none")
        m.train()
        feats = variants_of([B, self.P, self.D], 0.0, 2.0, 3, self.gen, self.device)
        batches = [Batch(B, self.V, self.gen, self.device) for _ in feats]
        loss_fn = v.maybe_compile("train_loss", teacher_forced_loss)

        def run_loss(model, f, batch):
            return loss_fn(model.decoder, f, batch)
        checks, ok = self._train_check(v, m, feats[0], batches[0], 4, encode=False)
        params = [p for p in m.decoder.parameters() if p.requires_grad]
        first = []

        def call(i):
            k = i % len(feats)
            for p in params:
                p.grad = None
            with v.autocast():
                loss = run_loss(m, feats[k], batches[k])
            loss.backward()
            if not first:
                first.append(loss.detach())
        row.update(self.timer.measure(1, call))
        loss0 = first[0].float().item()
        if not math.isfinite(loss0):
            ok = False
            checks.append("full-batch loss not finite")
        row["check"], row["check_ok"] = ", ".join(checks), ok
        row["throughput"], row["throughput_unit"] = B * 1e3 / row["ms_median"], "captions/s"
        row["goal_ms"] = GOALS_MS["decoder_train_t20_b64"]

    def cross_entropy_1280x10000(self, v, row):
        N, V = self.B["ce"], 10000
        row["shape"] = f"cross_entropy fwd + bwd, logits [{N}, {V}] " + ("bf16 (autocast)" if v.bf16 else "fp32")
        dtype = torch.bfloat16 if v.bf16 else torch.float32
        logits = [x.requires_grad_() for x in variants_of([N, V], -4.0, 4.0, 4, self.gen, self.device, dtype)]
        targets = [torch.randint(0, V, (N,), generator=self.gen).to(self.device) for _ in logits]

        def ce(x, t):
            with v.autocast():
                loss = F.cross_entropy(x, t)
            loss.backward()
            return loss
        fn = v.maybe_compile("ce", ce)
        loss = fn(logits[0], targets[0])
        want = F.cross_entropy(logits[0].detach().double().cpu(), targets[0].cpu()).item()
        checks = []
        ok = compare(checks, "loss rel err vs CPU fp64", abs(loss.float().item() - want) / want,
                     1e-5 if not v.bf16 else 1e-2)
        row["check"], row["check_ok"] = ", ".join(checks), ok

        def call(i):
            x = logits[i % len(logits)]
            x.grad = None
            fn(x, targets[i % len(targets)])
        row.update(self.timer.measure(5, call))
        # The engine's byte model (gpu_bench.cpp): 12 N V + 8 N bytes, whatever the dtype here.
        row["bytes"] = 12.0 * N * V + 8.0 * N
        row["throughput"], row["throughput_unit"] = N * 1e3 / row["ms_median"], "rows/s"

    def adamw_21M(self, v, row):
        shapes = [p.shape for p in self.base.decoder.parameters()]
        n = sum(math.prod(s) for s in shapes)
        row["shape"] = f"AdamW step over {len(shapes)} tensors, {n} parameters (decoder shapes)"
        params = [(torch.rand(s, generator=self.gen) * 0.2 - 0.1) for s in shapes]
        grads = [(torch.rand(s, generator=self.gen) * 2 - 1) for s in shapes]
        ref = [p.clone().requires_grad_() for p in params]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        torch.optim.AdamW(ref, lr=4e-4, weight_decay=0.01).step()
        dev = [p.to(self.device).requires_grad_() for p in params]
        for p, g in zip(dev, grads):
            p.grad = g.to(self.device)
        # compile: the default (foreach) AdamW with its step compiled, as PyTorch's
        # documentation does it; the eager variants use their own AdamW.
        opt = v.adamw(dev, fused=False if v.compile else None)
        step = v.maybe_compile("adamw", opt.step)
        step()
        err = max((p.detach().cpu() - r.detach()).abs().max().item() for p, r in zip(dev, ref))
        checks = []
        ok = compare(checks, "one step vs CPU max|d param|", err, 1e-6)
        row["check"], row["check_ok"] = ", ".join(checks), ok
        row.update(self.timer.measure(5, lambda i: step()))
        row["bytes"] = 7.0 * 4.0 * n  # param, grad, exp_avg, exp_avg_sq read; 3 written
        row["throughput"], row["throughput_unit"] = n / (row["ms_median"] * 1e-3) / 1e9, "Gparams/s"

    def _decode_1img(self, v, row, beam):
        name = "greedy_1img" if beam == 1 else "beam3_1img"
        row["shape"] = (("greedy" if beam == 1 else "beam 3") +
                        f" caption of one {self.S}x{self.S} image, encoder included, {WORDS} words")
        m = self.inference_model(v)
        encoder = v.maybe_compile("encoder_inference", m.encoder)
        step = v.maybe_compile("step", step_fn(m.decoder))
        images = [v.images(x) for x in variants_of([1, 3, self.S, self.S], -2.0, 2.0, 4, self.gen, self.device)]

        def run(i):
            with torch.no_grad():
                f = encoder(images[i % len(images)])
                if beam == 1:
                    return greedy_caption(step, m.decoder, f, WORDS)
                return beam_caption(step, m.decoder, f, beam, WORDS)
        got = run(0)
        with torch.no_grad():
            rf = self.cpu_ref.encoder(images[0].float().cpu().contiguous())
            want = (rm.greedy_decode(self.cpu_ref.decoder, rf, WORDS)[0] if beam == 1
                    else rm.beam_search(self.cpu_ref.decoder, rf, beam, WORDS))
        ok = got.steps == WORDS and len(got.words) == WORDS and all(
            rm.NUM_SPECIAL <= w < self.V for w in got.words) and all(math.isfinite(x) for x in got.log_probs)
        same = 0
        while same < min(len(got.words), len(want.words)) and got.words[same] == want.words[same]:
            same += 1
        row["check"] = (f"{'ok' if ok else 'FAIL'}: {got.steps} steps, {len(got.words)} valid words; first "
                        f"{same}/{len(want.words)} words as CPU fp32; score {got.score:.4f} (CPU {want.score:.4f})")
        row["check_ok"] = ok
        row.update(self.timer.measure(1, run))
        row["throughput"], row["throughput_unit"] = 1e3 / row["ms_median"], "captions/s"
        row["goal_ms"] = GOALS_MS[name]

    def greedy_1img(self, v, row):
        self._decode_1img(v, row, 1)

    def beam3_1img(self, v, row):
        self._decode_1img(v, row, 3)

    def resnet50_fwd_b256(self, v, row):
        B = self.B["fwd"]
        row["shape"] = f"encoder (ResNet-50 + pooling to P={self.P}), [{B},3,{self.S},{self.S}], inference"
        m = self.inference_model(v)
        encoder = v.maybe_compile("encoder_inference", m.encoder)
        images = [v.images(x) for x in variants_of([B, 3, self.S, self.S], -2.0, 2.0, 2, self.gen, self.device)]
        with torch.no_grad():
            got = encoder(images[0])[:2].float().cpu()
            want = self.cpu_ref.encoder(images[0][:2].float().cpu().contiguous())
        checks = []
        finite = bool(torch.isfinite(got).all())
        if not v.bf16:
            ok = compare(checks, "2 images: max|d| / max|ref| vs CPU fp32",
                         ((got - want).abs().max() / want.abs().max()).item(), 1e-2)
        else:
            # This random ResNet-50 amplifies rounding layer after layer: bfloat16 gives a
            # relative L2 error of ~0.4 against float32 (cosine ~0.91, measured on the
            # CPU at 224x224), so only gross errors can be told apart here.
            cos = F.cosine_similarity(got.flatten(), want.flatten(), dim=0).item()
            ok = compare(checks, "2 images: 1 - cosine vs CPU fp32", 1.0 - cos, 0.2)
        ok = ok and finite
        row["check"], row["check_ok"] = ", ".join(checks), ok

        def call(i):
            with torch.no_grad():
                encoder(images[i % len(images)])
        row.update(self.timer.measure(1, call))
        row["throughput"], row["throughput_unit"] = B * 1e3 / row["ms_median"], "images/s"

    def _train_step(self, v, row, fine_tune):
        B = self.B["step"]
        row["shape"] = (f"encode (ResNet-50, fine-tune {fine_tune}) + decoder fwd/bwd (20 steps) + clip 5 + "
                        f"AdamW, [{B},3,{self.S},{self.S}]")
        m = v.training_model(self.base)
        m.encoder.set_fine_tune(fine_tune)
        m.train()
        images = [v.images(x) for x in variants_of([B, 3, self.S, self.S], -2.0, 2.0, 2, self.gen, self.device)]
        batches = [Batch(B, self.V, self.gen, self.device) for _ in images]
        encoder = v.maybe_compile("encoder_train_" + fine_tune, m.encoder)
        loss_fn = v.maybe_compile("train_loss", teacher_forced_loss)

        def run_loss(model, x, batch):
            return loss_fn(model.decoder, encoder(x), batch)
        checks, ok = self._train_check(v, m, images[0], batches[0], 2, encode=True)
        enc_params = [p for p in m.encoder.parameters() if p.requires_grad]
        dec_params = [p for p in m.decoder.parameters() if p.requires_grad]
        groups = [{"params": dec_params, "lr": 4e-4}]
        if enc_params:
            groups.append({"params": enc_params, "lr": 1e-4})
        opt = v.adamw(groups)
        trainable = enc_params + dec_params
        last = []

        def call(i):
            k = i % len(images)
            opt.zero_grad(set_to_none=True)
            with v.autocast():
                loss = run_loss(m, images[k], batches[k])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            opt.step()
            last[:] = [loss.detach()]
        row.update(self.timer.measure(1, call))
        loss = last[0].float().item()
        ok &= math.isfinite(loss)
        checks.append(f"last loss {loss:.4f}")
        row["check"], row["check_ok"] = ", ".join(checks), ok
        row["throughput"], row["throughput_unit"] = B * 1e3 / row["ms_median"], "images/s"

    def train_step_frozen_r50_b128(self, v, row):
        self._train_step(v, row, "none")

    def train_step_finetune2_r50_b128(self, v, row):
        self._train_step(v, row, "from:2")

    def inference_model(self, v):
        if getattr(self, "_inference_for", None) != v.name:
            self._inference = v.inference_model(self.base)
            self._inference_for = v.name
        return self._inference


# ---- main -------------------------------------------------------------------------------------

def write_json(path, doc):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def fmt_row(name, r):
    if r.get("status") != "ok":
        return f"  {name:30s} {r.get('status')}"
    extra = f"{r['bytes'] / (r['ms_median'] * 1e-3) / 1e9:.0f} GB/s" if "bytes" in r else \
        f"{r['throughput']:.1f} {r['throughput_unit']}"
    return (f"  {name:30s} {r['ms_median']:10.4f} {r['ms_p10']:10.4f} {r['ms_p90']:10.4f} {r['samples']:5d}  "
            f"{extra:20s} {'check ok' if r['check_ok'] else 'CHECK FAILED: ' + r['check']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="bench_gpu --save-checkpoint's file (else seeded random weights)")
    ap.add_argument("--json", help="write the rows here (after every row)")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (cpu: a test of this script)")
    ap.add_argument("--only", default="", help="comma-separated rows (default: all)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of " + ",".join(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="fewer warm-ups and samples")
    ap.add_argument("--repeats", type=int, default=0, help="exactly this many samples per row")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds for the whole run (0: none)")
    ap.add_argument("--peak-gbs", type=float, default=3350.0, help="bandwidth for %% of peak (H100 SXM: 3350)")
    ap.add_argument("--positions", type=int, choices=[196, 49], default=196,
                    help="attention positions: 196 (14x14, as the engine) or 49 (7x7)")
    ap.add_argument("--tiny", action="store_true", help="tiny batches and 64x64 images: tests this script")
    ap.add_argument("--vocab", type=int, default=10000, help="vocabulary without a checkpoint")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode: default, reduce-overhead, max-autotune, ...")
    args = ap.parse_args()
    start = time.monotonic()
    only = [r for r in args.only.split(",") if r]
    variants = [x for x in args.variants.split(",") if x]
    for r in only:
        if r not in ROWS:
            ap.error(f"unknown row {r!r}; rows: {', '.join(ROWS)}")
    for x in variants:
        if x not in VARIANTS:
            ap.error(f"unknown variant {x!r}; variants: {', '.join(VARIANTS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"torch_bench: torch {torch.__version__} sees no CUDA device: nothing measured")
        return 3
    torch.manual_seed(0)

    base, config, vocab, source = load_model(args)
    timer = Timer(device, args, start)
    bench = Bench(args, device, base, config, timer)
    meta = {
        "tool": "torch_bench", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "weights": source, "positions": bench.P, "vocab": bench.V, "peak_gbs": args.peak_gbs,
        "tiny": args.tiny, "quick": args.quick, "compile_mode": args.compile_mode,
        "timing": "CUDA events per sample after a synchronize; per-call median, p10, p90"
        if device.type == "cuda" else "perf_counter per sample; per-call median, p10, p90",
    }
    doc = dict(meta, variants={})
    print(f"torch_bench: torch {torch.__version__} on {meta['device']}; weights: {source}; "
          f"P={bench.P}, V={bench.V}{'; TINY shapes' if args.tiny else ''}")
    failures = 0
    for vname in variants:
        v = Variant(vname, device, args)
        entry = {"description": v.describe(), "status": "ok", "rows": {}}
        doc["variants"][vname] = entry
        if v.compile and not hasattr(torch, "compile"):
            major_minor = ".".join(torch.__version__.split(".")[:2])
            entry["status"] = f"skipped: torch {major_minor} has no torch.compile"
            print(f"{vname}: {entry['status']}")
            write_json(args.json, doc)
            continue
        v.set_precision()
        print(f"{vname}: {entry['description']}")
        for name in ROWS:
            if only and name not in only:
                continue
            row = {"status": "ok"}
            entry["rows"][name] = row
            need = 10 + (COMPILE_COST_S[name] if v.compile else 0)
            try:
                if timer.remaining() < need:
                    raise Skip(f"skipped: time budget ({timer.remaining():.0f} s left, row needs ~{need} s)")
                getattr(bench, name)(v, row)
            except Skip as e:
                row["status"] = str(e)
            except Exception as e:  # noqa: BLE001  (a failing row must not stop the others)
                what = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                # PyTorch's compiler failing is a fact about this torch, not a failure of
                # the benchmark: recorded as a skip with the reason.
                row["status"] = f"skipped: compile variant failed: {what}" if v.compile else f"error: {what}"
                if os.environ.get("TORCH_BENCH_TRACE"):
                    traceback.print_exc()
            if row["status"] != "ok" and not row["status"].startswith("skipped"):
                failures += 1
            elif row["status"] == "ok" and not row.get("check_ok"):
                failures += 1
            if row["status"] == "ok" and "bytes" in row:
                row["gbs"] = row["bytes"] / (row["ms_median"] * 1e-3) / 1e9
                row["pct_peak"] = 100.0 * row["gbs"] / args.peak_gbs
            print(fmt_row(name, row), flush=True)
            write_json(args.json, doc)
        bench._inference_for = None  # free the variant's inference copy
        bench._inference = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"torch_bench: done in {time.monotonic() - start:.0f} s, {failures} row(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
