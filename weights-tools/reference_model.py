"""Our PyTorch reference of the captioning model (shared/MODEL_SPEC.md sections 3-7).

This is the independent side of the engine's golden tests: plain PyTorch, written from
the spec, with the module and parameter names of the spec's checkpoint layout, so that
`CaptionModel.state_dict()` (less `num_batches_tracked`) *is* a checkpoint.

Choices:
  * Encoder: torchvision resnetX(weights=None) with its children conv1 .. layer4 held
    directly (names `encoder.conv1.weight`, `encoder.layer1.0.bn1.running_mean`, ...);
    avgpool and fc dropped; then AdaptiveAvgPool2d((S, S)); output [B, P, D],
    p = row * S + col. Frozen parts (fine_tune none / from:N) have requires_grad off and
    their batch norm stays in eval mode whatever .train() says.
  * Decoder: the training forward processes every row at every step and masks rows
    whose caption has ended (t >= length - 1): their logits and alphas are zero and they
    get no gradient. Because lengths only end rows (never revive them), this equals the
    packed/sorted formulation exactly; no sorting is needed (tests check it).
  * Initialisation follows the well-known PyTorch implementation: embedding and fc.weight
    uniform(-0.1, 0.1), fc.bias zero; the other layers keep PyTorch's defaults. (Only
    the golden files' values matter to the engine, and those are stored.)
  * Scheduled sampling (teacher_forcing < 1) draws one coin per row and step t >= 1 from
    the given torch.Generator; the engine uses its own Philox generator, so this path is
    not golden-tested (only its structure is the same).
  * Decoding (greedy, shrinking beam) runs under no_grad with dropout off; exact score
    ties go to the lower (hypothesis, token) index, as the engine does, so k = 1 is greedy.
    Results leave out the four special tokens, with their log-probs and attention maps.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ["<pad>", "<sos>", "<eos>", "<unk>"]
NUM_SPECIAL = 4

# depth -> (block type, blocks per layer), as torchvision builds them.
RESNET_LAYOUT = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}
CHECKPOINT_FORMAT = "caption-checkpoint/1"
DEFAULT_TEXT_OPTIONS = {
    "lowercase": True, "remove_punctuation": True, "alpha_only": True, "lemmatize": False,
    "lemmatize_pos": "n", "stem": False, "remove_stopwords": False, "min_token_len": 1,
}


def encoder_channels(depth):
    """D: 512 for ResNet-18/34, 2048 for the bottleneck ResNets."""
    return 512 if RESNET_LAYOUT[depth][0] == "basic" else 2048


def parse_fine_tune(text):
    """'none' -> 5, 'all' -> 0, 'from:N' (N in 2..4) -> N: the first layer that trains
    (0 = everything incl. the stem, 5 = nothing)."""
    if text == "none":
        return 5
    if text == "all":
        return 0
    if text.startswith("from:") and text[5:] in ("2", "3", "4"):
        return int(text[5:])
    raise ValueError(f"fine_tune {text!r}: expected none, all or from:N with N in 2..4")


class Encoder(nn.Module):
    """ResNet trunk + adaptive pooling: images [B, 3, H, W] -> features [B, P, D]."""

    def __init__(self, depth=50, encoder_size=14, fine_tune="none"):
        super().__init__()
        if depth not in RESNET_LAYOUT:
            raise ValueError(f"encoder depth {depth}: expected one of {sorted(RESNET_LAYOUT)}")
        resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.depth = depth
        self.encoder_size = encoder_size
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))
        self.pool = nn.AdaptiveAvgPool2d((encoder_size, encoder_size))
        self.set_fine_tune(fine_tune)

    def _parts(self):
        """(first trainable layer index, module) for the stem (0) and layer1..4."""
        return [(0, self.conv1), (0, self.bn1)] + [
            (i, getattr(self, f"layer{i}")) for i in range(1, 5)]

    def set_fine_tune(self, fine_tune):
        first = parse_fine_tune(fine_tune)
        self.fine_tune = fine_tune
        # 'all' trains the stem too; 'from:N' trains layerN..layer4.
        for index, module in self._parts():
            trainable = index >= first if first > 0 else True
            for p in module.parameters():
                p.requires_grad_(trainable)
        self.train(self.training)

    def frozen_modules(self):
        first = parse_fine_tune(self.fine_tune)
        return [m for i, m in self._parts() if not (first == 0 or i >= first)]

    def train(self, mode=True):
        super().train(mode)
        for m in self.frozen_modules():  # frozen batch norm always uses running stats
            m.eval()
        return self

    def forward(self, images):
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.pool(x)  # [B, D, S, S]
        return x.permute(0, 2, 3, 1).flatten(1, 2)  # [B, P, D], p = row * S + col


class Decoder(nn.Module):
    """LSTMCell decoder with additive (Bahdanau) attention, MODEL_SPEC section 4."""

    def __init__(self, vocab_size, embed_dim, decoder_dim, attention_dim, encoder_dim,
                 attention_activation="tanh", dropout=0.5):
        super().__init__()
        if attention_activation not in ("tanh", "relu"):
            raise ValueError(f"attention_activation {attention_activation!r}: tanh or relu")
        self.vocab_size = vocab_size
        self.attention_activation = attention_activation
        self.embedding = nn.Embedding(vocab_size, embed_dim)            # [V, E]
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)        # D -> A
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)        # H -> A
        self.full_att = nn.Linear(attention_dim, 1)                     # A -> 1
        self.init_h = nn.Linear(encoder_dim, decoder_dim)               # D -> H
        self.init_c = nn.Linear(encoder_dim, decoder_dim)               # D -> H
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)               # H -> D
        self.lstm = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)   # [E + D] -> H
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(decoder_dim, vocab_size)                    # H -> V
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.1, 0.1)
            self.fc.weight.uniform_(-0.1, 0.1)
            self.fc.bias.zero_()

    def init_state(self, features):
        """features [B, P, D] -> h0, c0 [B, H] and enc_proj [B, P, A]."""
        mean_a = features.mean(dim=1)
        return self.init_h(mean_a), self.init_c(mean_a), self.encoder_att(features)

    def attend(self, h, features, enc_proj):
        """alpha [B, P] and the gated context z [B, D] from h_{t-1}."""
        act = torch.tanh if self.attention_activation == "tanh" else torch.relu
        e = self.full_att(act(enc_proj + self.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, dim=1)
        context = (alpha.unsqueeze(2) * features).sum(dim=1)
        return alpha, torch.sigmoid(self.f_beta(h)) * context

    def step(self, words, h, c, features, enc_proj):
        """One decoder step: words [B] int64 -> (h, c, alpha [B, P]); logits are fc(h)."""
        alpha, z = self.attend(h, features, enc_proj)
        x = torch.cat([self.embedding(words), z], dim=1)
        h, c = self.lstm(x, (h, c))
        return h, c, alpha

    def forward(self, features, captions, lengths, teacher_forcing=1.0, generator=None):
        """features [B, P, D]; captions [B, L] int64 (<sos> w.. <eos> <pad>..); lengths [B]
        tokens incl. <sos>/<eos>. Returns logits [B, T, V], alphas [B, T, P] with
        T = max(lengths) - 1, zero where a caption has ended."""
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        B = features.shape[0]
        if captions.shape[0] != B or lengths.shape != (B,):
            raise ValueError(f"{B} images, captions {tuple(captions.shape)}, "
                             f"lengths {tuple(lengths.shape)}")
        if int(lengths.min()) < 2 or int(lengths.max()) > captions.shape[1]:
            raise ValueError(f"lengths {lengths.tolist()} outside [2, {captions.shape[1]}]")
        T = int(lengths.max()) - 1
        valid = torch.arange(T).unsqueeze(0) < (lengths - 1).unsqueeze(1)  # [B, T]
        h, c, enc_proj = self.init_state(features)
        logits, alphas = [], []
        previous = None
        for t in range(T):
            words = captions[:, t]
            if t >= 1 and teacher_forcing < 1.0:
                coins = torch.rand(B, generator=generator, dtype=torch.float64)
                words = torch.where(coins < teacher_forcing, words, previous)
            h, c, alpha = self.step(words, h, c, features, enc_proj)
            step_logits = self.fc(self.dropout(h))
            previous = step_logits.detach().argmax(dim=1)
            keep = valid[:, t].unsqueeze(1)
            logits.append(torch.where(keep, step_logits, torch.zeros_like(step_logits)))
            alphas.append(torch.where(keep, alpha, torch.zeros_like(alpha)))
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)


def caption_loss(logits, alphas, captions, lengths, alpha_c=1.0):
    """MODEL_SPEC section 5. Returns (total, cross_entropy, attention) scalars."""
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    T = logits.shape[1]
    valid = torch.arange(T).unsqueeze(0) < (lengths - 1).unsqueeze(1)   # [B, T]
    targets = captions[:, 1:T + 1]                                       # step t -> token t+1
    ce = F.cross_entropy(logits[valid], targets[valid])
    attention = alpha_c * ((1.0 - alphas.sum(dim=1)) ** 2).mean()       # alphas are 0 off-caption
    total = ce + attention if alpha_c != 0 else ce
    return total, ce, attention


def packed_order(lengths):
    """Row order of the packed (step-major) layout used by the engine: for each step t,
    the rows b (in batch order, the batch sorted longest first) still decoding."""
    lengths = [int(x) for x in lengths]
    T = max(lengths) - 1
    return [(b, t) for t in range(T) for b in range(len(lengths)) if t < lengths[b] - 1]


class CaptionModel(nn.Module):
    def __init__(self, config, vocab_size):
        super().__init__()
        depth = int(config["encoder"].removeprefix("resnet"))
        self.config = dict(config)
        self.encoder = Encoder(depth, config["encoder_size"], config.get("fine_tune", "none"))
        self.decoder = Decoder(vocab_size, config["embed_dim"], config["decoder_dim"],
                               config["attention_dim"], encoder_channels(depth),
                               config["attention_activation"], config["dropout"])


# ---- decoding (MODEL_SPEC section 6) ----

@dataclass
class Decoded:
    words: list = field(default_factory=list)       # word ids (special tokens left out)
    log_probs: list = field(default_factory=list)   # per word
    attention: list = field(default_factory=list)   # per word, np.ndarray [P]
    tokens: list = field(default_factory=list)      # every decoded token, specials included
    score: float = 0.0                              # sum of log-probs of all decoded tokens
    finished: bool = False                          # ended with <eos>

    @property
    def steps(self):
        return len(self.tokens)

    def extended(self, token, log_prob, alpha):
        d = Decoded(list(self.words), list(self.log_probs), list(self.attention),
                    self.tokens + [token], self.score + log_prob, token == EOS)
        if token >= NUM_SPECIAL:
            d.words.append(token)
            d.log_probs.append(log_prob)
            d.attention.append(alpha)
        return d


def _decode_step(decoder, tokens, state):
    h, c, features, enc_proj = state
    h, c, alpha = decoder.step(tokens, h, c, features, enc_proj)
    log_probs = torch.log_softmax(decoder.fc(h), dim=1)  # dropout is off at inference
    return log_probs, alpha, (h, c, features, enc_proj)


@torch.no_grad()
def greedy_decode(decoder, features, max_len, margins=None):
    """features [B, P, D] -> list of B Decoded; arg-max with ties to the lowest id.
    margins, if a list, receives each choice's gap between the best and second-best
    log-probability (how far the result is from a tie; make_golden checks it)."""
    B = features.shape[0]
    h, c, enc_proj = decoder.init_state(features)
    state = (h, c, features, enc_proj)
    results = [Decoded() for _ in range(B)]
    live = list(range(B))
    tokens = torch.full((B,), SOS, dtype=torch.int64)
    for _ in range(max_len):
        if not live:
            break
        log_probs, alpha, state = _decode_step(decoder, tokens, state)
        best = log_probs.argmax(dim=1)  # first maximum = lowest id
        if margins is not None:
            top2 = log_probs.topk(2, dim=1).values
            margins.extend((top2[:, 0] - top2[:, 1]).tolist())
        keep = []
        for row, b in enumerate(live):
            token = int(best[row])
            results[b] = results[b].extended(token, float(log_probs[row, token]),
                                             alpha[row].numpy().copy())
            if token != EOS:
                keep.append(row)
        live = [live[r] for r in keep]
        index = torch.tensor(keep, dtype=torch.int64)
        state = tuple(s.index_select(0, index) for s in state)
        tokens = best.index_select(0, index)
    return results


@torch.no_grad()
def beam_search(decoder, features, beam, max_len, length_penalty=0.0, return_live=False,
                margins=None):
    """Shrinking beam for one image's features [1, P, D] (or [P, D]). Returns the best
    finished Decoded (by score / L^length_penalty), or, when nothing finished within
    max_len steps, the live hypothesis with the best raw score. With return_live, also
    the final live hypotheses (for tests). margins, if a list, receives the gaps that
    decide the result: between the last kept and the first dropped extension at each
    step, and between the chosen result and the runner-up."""
    if beam < 1 or max_len < 1:
        raise ValueError(f"beam {beam} and max_len {max_len} must be positive")
    if features.dim() == 2:
        features = features.unsqueeze(0)
    h, c, enc_proj = decoder.init_state(features)
    state = (h, c, features, enc_proj)
    live = [Decoded()]
    tokens = torch.tensor([SOS], dtype=torch.int64)
    finished = []
    for _ in range(max_len):
        if not live or len(finished) >= beam:
            break
        log_probs, alpha, state = _decode_step(decoder, tokens, state)
        V = log_probs.shape[1]
        lp = log_probs.double().numpy()
        scores = (np.array([d.score for d in live])[:, None] + lp).reshape(-1)
        want = min(beam - len(finished), scores.size)
        # Descending score; exact ties to the lower flat index (hypothesis, then token).
        ranked = np.lexsort((np.arange(scores.size), -scores))
        order = ranked[:want]
        if margins is not None and want < scores.size:
            margins.append(float(scores[ranked[want - 1]] - scores[ranked[want]]))
        next_live, rows, next_tokens = [], [], []
        for flat in order:
            hyp, token = divmod(int(flat), V)
            d = live[hyp].extended(token, float(lp[hyp, token]), alpha[hyp].numpy().copy())
            if token == EOS:
                finished.append(d)
            else:
                next_live.append(d)
                rows.append(hyp)
                next_tokens.append(token)
        live = next_live
        if live:
            index = torch.tensor(rows, dtype=torch.int64)
            state = tuple(s.index_select(0, index) for s in state)
            tokens = torch.tensor(next_tokens, dtype=torch.int64)
    if finished:
        def rank(d):
            return d.score / (d.steps ** length_penalty) if length_penalty else d.score
        pool = finished
    else:
        def rank(d):
            return d.score
        pool = live
    best = pool[0]
    for d in pool[1:]:
        if rank(d) > rank(best):  # strict: ties keep the earlier one
            best = d
    if margins is not None and len(pool) > 1:
        margins.append(rank(best) - max(rank(d) for d in pool if d is not best))
    return (best, live) if return_live else best


# ---- checkpoints (MODEL_SPEC section 7) ----

def make_config(encoder="resnet50", encoder_size=14, image_size=224, embed_dim=512,
                decoder_dim=512, attention_dim=512, attention_activation="tanh",
                dropout=0.5, max_decode_len=50, max_caption_len=50, fine_tune="none",
                vocab_size=None, text=None):
    """The `config` metadata object, with exactly the keys the engine's ModelConfig knows
    (it refuses unknown keys)."""
    config = {
        "encoder": encoder, "encoder_size": encoder_size, "image_size": image_size,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "embed_dim": embed_dim, "decoder_dim": decoder_dim, "attention_dim": attention_dim,
        "attention_activation": attention_activation, "dropout": dropout,
        "max_decode_len": max_decode_len, "max_caption_len": max_caption_len,
        "fine_tune": fine_tune, "text": dict(text or DEFAULT_TEXT_OPTIONS),
    }
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    return config


def checkpoint_tensors(model):
    """MODEL_SPEC section 7 names -> float32 numpy arrays (num_batches_tracked dropped)."""
    return {name: t.detach().to(torch.float32).cpu().numpy()
            for name, t in model.state_dict().items() if not name.endswith("num_batches_tracked")}


def checkpoint_metadata(config, vocab):
    if list(vocab[:NUM_SPECIAL]) != SPECIAL_TOKENS:
        raise ValueError(f"vocab must start with {SPECIAL_TOKENS}, got {vocab[:NUM_SPECIAL]}")
    return {"format": CHECKPOINT_FORMAT,
            "config": json.dumps(config, separators=(",", ":"), ensure_ascii=False),
            "vocab": json.dumps(list(vocab), separators=(",", ":"), ensure_ascii=False)}


def load_checkpoint(path):
    """Builds a CaptionModel (float32) from a checkpoint file: (model, config, vocab)."""
    import safetensors_io
    tensors, metadata = safetensors_io.load(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {metadata.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    config = json.loads(metadata["config"])
    vocab = json.loads(metadata["vocab"])
    model = CaptionModel(config, len(vocab))
    state = model.state_dict()
    missing = [k for k in state if k not in tensors and not k.endswith("num_batches_tracked")]
    unknown = [k for k in tensors if k not in state]
    if missing or unknown:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unknown tensors {unknown[:5]}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{path}: tensor {k} has shape {list(v.shape)}, "
                             f"the config needs {list(state[k].shape)}")
        state[k] = torch.from_numpy(v)
    model.load_state_dict(state)
    return model, config, vocab
