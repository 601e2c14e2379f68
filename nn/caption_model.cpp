// The captioning model: encoder pooling, the packed decoder loop, the loss.
#include "nn/caption_model.h"

#include <algorithm>
#include <mutex>

#include "nn/encoder_graph.h"
#include "nn/folded_resnet.h"
#include "nn/recurrence.h"

namespace caption::nn {

namespace {
AttentionOptions attention_options(AttentionActivation a) {
  AttentionOptions o;
  o.activation = a == AttentionActivation::Tanh ? AttentionOptions::Activation::Tanh
                                                : AttentionOptions::Activation::Relu;
  return o;
}

// A training pass's step products, arranged so that the backward does per batch what a
// plain recording would do per step (nn/recurrence.h): everything that reads h (the
// attention's projection, the gate, the LSTM's recurrent half) is one product with
// their weights stacked, one each way per step, and forms its weight gradient once over
// all steps' rows, as the LSTM's context half does; the LSTM's word half (w_ih_word) is
// one product over all steps under teacher forcing. The gates are then summed and
// activated by the pointwise LSTM op. Same function as attend_and_update.
struct StepProducts {
  explicit StepProducts(const AttentionDecoder& d)
      : E(d.embedding.weight.size(1)),
        w_ih_word(d.lstm.weight_ih.narrow(1, 0, E)),
        h_blocks{d.full_att.weight.size(1), d.f_beta.weight.size(0), d.lstm.weight_hh.size(0)},
        h_in(concat({d.decoder_att.weight, d.f_beta.weight, d.lstm.weight_hh}, 0),
             concat({d.decoder_att.bias, d.f_beta.bias, d.lstm.bias_hh}, 0)),
        context_in(d.lstm.weight_ih.narrow(1, E, d.lstm.weight_ih.size(1) - E), d.lstm.bias_ih) {}
  int64_t E;
  Tensor w_ih_word;
  std::vector<int64_t> h_blocks;  // [A | D | 4H]: attention projection, gate, recurrent half
  RecurrentLinear h_in, context_in;
};
}  // namespace

AttentionDecoder::AttentionDecoder(const ModelConfig& c, Generator& gen)
    : embedding(c.vocab_size, c.embed_dim, gen),
      encoder_att(c.encoder_channels(), c.attention_dim, gen),
      decoder_att(c.decoder_dim, c.attention_dim, gen),
      full_att(c.attention_dim, 1, gen),
      init_h(c.encoder_channels(), c.decoder_dim, gen),
      init_c(c.encoder_channels(), c.decoder_dim, gen),
      f_beta(c.decoder_dim, c.encoder_channels(), gen),
      lstm(c.embed_dim + c.encoder_channels(), c.decoder_dim, gen),
      dropout(c.dropout),
      fc(c.decoder_dim, c.vocab_size, gen),
      activation_(c.attention_activation),
      encoder_size_(c.encoder_size) {
  register_module("embedding", embedding);
  register_module("encoder_att", encoder_att);
  register_module("decoder_att", decoder_att);
  register_module("full_att", full_att);
  register_module("init_h", init_h);
  register_module("init_c", init_c);
  register_module("f_beta", f_beta);
  register_module("lstm", lstm);
  register_module("dropout", dropout);
  register_module("fc", fc);
}

AttentionDecoder::Step AttentionDecoder::attend_and_update(const Tensor& emb,
                                                           const DecoderState& s) const {
  const int64_t A = full_att.weight.size(1), D = f_beta.weight.size(0);
  const int64_t G = lstm.weight_hh.size(0);
  // One product for everything that reads h: [rows, A | D | 4H].
  const Tensor from_h = linear(s.h, s.h_weight, s.h_bias);
  // decoder_att(h) and f_beta(h) are read in place as column blocks of from_h.
  const AttentionStepResult att =
      attention_step(s.enc_proj, from_h.narrow(1, 0, A), full_att.weight.reshape({A}),
                     full_att.bias, s.features, from_h.narrow(1, A, D), {},
                     attention_options(activation_));
  const Tensor x = concat({emb, att.z}, 1);  // [rows, E + D]
  // The LSTM cell with its recurrent half already in from_h (read in place).
  return {lstm_gates({linear(x, lstm.weight_ih, lstm.bias_ih), from_h.narrow(1, A + D, G)}, s.c),
          att.alpha};
}

DecoderOutput AttentionDecoder::forward(const Tensor& features, const CaptionBatch& batch,
                                        double teacher_forcing, Generator& gen) const {
  CAPTION_CHECK(features.dim() == 3, "decoder: features must be [B, P, D], got ", features.describe());
  const int64_t B = features.size(0), P = features.size(1);
  CAPTION_CHECK(static_cast<int64_t>(batch.lengths.size()) == B && batch.captions.dim() == 2 &&
                    batch.captions.size(0) == B,
                "decoder: ", B, " images but captions ", batch.captions.describe(), " and ",
                batch.lengths.size(), " lengths");
  CAPTION_CHECK(teacher_forcing >= 0 && teacher_forcing <= 1, "decoder: teacher_forcing ",
                teacher_forcing, " is outside [0, 1]");
  for (int64_t b = 0; b < B; ++b) {
    CAPTION_CHECK(batch.lengths[b] >= 2 && batch.lengths[b] <= batch.captions.size(1),
                  "decoder: caption ", b, " has length ", batch.lengths[b], " (captions are ",
                  batch.captions.describe(), ")");
    CAPTION_CHECK(b == 0 || batch.lengths[b] <= batch.lengths[b - 1],
                  "decoder: the batch must be sorted by caption length, longest first");
  }
  const AttentionGrid grid = AttentionGrid::of(P, encoder_size_);
  const int64_t T = batch.lengths[0] - 1;  // decode steps
  const std::vector<int64_t> tokens = batch.captions.to_vector<int64_t>();
  const int64_t L = batch.captions.size(1);
  const Device device = features.device();

  DecoderOutput out;
  std::vector<int64_t> targets;
  const int64_t V = fc.weight.size(0);
  // Every token the pass reads (input words, padding included, and targets) is checked
  // here, where they are on the host: the embedding lookups and the loss then read
  // nothing back from the device.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t) {
      const int64_t w = tokens[b * L + t];
      CAPTION_CHECK(w >= 0 && w < V, "decoder: token ", w, " of caption ", b,
                    " is outside the vocabulary of ", V, " words");
    }
  for (int64_t t = 0; t < T; ++t) {
    int64_t bt = 0;
    while (bt < B && batch.lengths[bt] - 1 > t) ++bt;
    out.batch_sizes.push_back(bt);
    for (int64_t b = 0; b < bt; ++b) targets.push_back(tokens[b * L + t + 1]);
  }
  const DeviceIndexChecksOff checked;  // word ids: above, or the arg-max of a step
  out.targets = Tensor::from_vector<int64_t>(targets, {static_cast<int64_t>(targets.size())}).to(device);

  const Tensor enc_proj = encoder_att.forward(features);  // [B, P, A], once per image
  const Tensor mean_a = mean(features, {1});              // [B, D]
  LstmState state{init_h.forward(mean_a), init_c.forward(mean_a)};
  const bool full_tf = teacher_forcing >= 1.0;
  const int64_t A = full_att.weight.size(1);
  const AttentionOptions att_options = attention_options(activation_);
  const Tensor full_att_w = full_att.weight.reshape({A});

  StepProducts products(*this);
  const Tensor& w_ih_word = products.w_ih_word;
  RecurrentLinear &h_in = products.h_in, &context_in = products.context_in;
  const std::vector<int64_t>& h_blocks = products.h_blocks;
  RecurrentLinear word_in(w_ih_word, Tensor());  // scheduled sampling: per step
  StepViews enc_rows(enc_proj), feature_rows(features);
  // Full teacher forcing: every step's input word is known, so their gate contributions
  // are one product over [T, B, E] (time-major, so that a step's rows are contiguous).
  Tensor word_gates;  // [T, B, 4H]
  if (full_tf) {
    const Tensor words = batch.captions.to(device).narrow(1, 0, T).permute({1, 0}).contiguous();
    word_gates = linear(embedding.forward(words), w_ih_word);
  }
  StepViews word_steps(word_gates.defined() ? word_gates : Tensor::zeros({1}));

  std::vector<Tensor> hidden, step_logits, alpha_rows;
  // Scheduled sampling: the captions and each step's arg-max stay where the pass runs; a
  // step's words are picked from the two by an index made from the host's coins, so that
  // nothing is read back (the logits used to come to the host for their arg-max).
  const Tensor captions = full_tf ? Tensor() : batch.captions.to(device);
  Tensor previous_prediction;  // [rows of the last step] int64, the arg-max of its logits
  for (int64_t t = 0; t < T; ++t) {
    const int64_t bt = out.batch_sizes[t];
    const Tensor h = state.h.narrow(0, 0, bt), c = state.c.narrow(0, 0, bt);
    const auto first_rows = [bt](const Tensor& x) { return x.narrow(0, 0, bt); };
    Tensor word_gate;
    if (full_tf) {
      word_gate = word_steps.view([t, bt](const Tensor& x) { return x.select(0, t).narrow(0, 0, bt); });
    } else {
      // pick[b] indexes [the captions' words | the previous arg-max]: one coin per sample
      // and step from step 2 on (t >= 1 here, 0-based).
      std::vector<int64_t> pick(bt);
      bool sampled = false;
      for (int64_t b = 0; b < bt; ++b) {
        pick[b] = b;
        if (t >= 1 && gen.uniform() >= teacher_forcing) {
          pick[b] = bt + b;
          sampled = true;
        }
      }
      Tensor words = captions.select(1, t).narrow(0, 0, bt);
      if (sampled)
        words = index_select(concat({words, previous_prediction.narrow(0, 0, bt)}, 0), 0,
                             Tensor::from_vector<int64_t>(pick, {bt}).to(device));
      word_gate = word_in(embedding.forward(words));
    }
    const std::vector<Tensor> from_h = h_in.split(h, h_blocks);  // [bt, A], [bt, D], [bt, 4H]
    const AttentionStepResult att = attention_step(enc_rows.view(first_rows), from_h[0], full_att_w,
                                                   full_att.bias, feature_rows.view(first_rows),
                                                   from_h[1], {}, att_options);  // z [bt, D]
    state = lstm_gates({word_gate, context_in(att.z), from_h[2]}, c);
    const Tensor h_drop = dropout.forward(state.h, gen);  // [bt, H]
    if (full_tf) {
      hidden.push_back(h_drop);
    } else {
      Tensor logits = fc.forward(h_drop);  // [bt, V]
      previous_prediction = max_last(logits).indices;  // the first of equal maxima, as max_element
      step_logits.push_back(logits);
    }
    Tensor a = att.alpha;  // [bt, P]
    if (bt < B) a = concat({a, Tensor::zeros({B - bt, P}, a.dtype(), device)}, 0);
    alpha_rows.push_back(a.unsqueeze(1));  // [B, 1, P]
  }
  // One vocabulary projection over all steps under full teacher forcing.
  out.logits = full_tf ? fc.forward(concat(hidden, 0)) : concat(step_logits, 0);
  out.alphas = grid.expand(concat(alpha_rows, 1));  // [B, T, S*S]
  return out;
}

PaddedBatch PaddedBatch::of(const CaptionBatch& batch, int64_t steps, Device device) {
  const int64_t B = static_cast<int64_t>(batch.lengths.size());
  CAPTION_CHECK(B > 0 && batch.captions.dim() == 2 && batch.captions.size(0) == B,
                "padded batch: ", B, " lengths for captions ",
                batch.captions.defined() ? batch.captions.describe() : std::string("(none)"));
  const int64_t L = batch.captions.size(1);
  CAPTION_CHECK(batch.lengths[0] - 1 <= steps, "padded batch: captions of ", batch.lengths[0],
                " tokens need ", batch.lengths[0] - 1, " steps, more than ", steps);
  const std::vector<int64_t> tokens = batch.captions.to(Device::cpu()).to_vector<int64_t>();
  std::vector<int64_t> words(static_cast<size_t>(steps * B), kPadId), targets(words.size(), kPadId);
  std::vector<float> active(words.size(), 0.0f);
  int64_t scored = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = batch.lengths[b];
    CAPTION_CHECK(len >= 2 && len <= L && (b == 0 || len <= batch.lengths[b - 1]),
                  "padded batch: caption ", b, " has length ", len,
                  " (lengths must be in [2, ", L, "], longest first)");
    for (int64_t t = 0; t < len - 1; ++t) {
      words[t * B + b] = tokens[b * L + t];
      targets[t * B + b] = tokens[b * L + t + 1];
      active[t * B + b] = 1.0f;
      ++scored;
    }
  }
  PaddedBatch p;
  p.words = Tensor::from_vector<int64_t>(words, {steps, B}).to(device);
  p.targets = Tensor::from_vector<int64_t>(targets, {steps * B}).to(device);
  p.active = Tensor::from_vector<float>(active, {steps, B, 1}).to(device);
  p.inv_words = Tensor::scalar(1.0 / static_cast<double>(scored), DType::F32).to(device);
  return p;
}

LossParts AttentionDecoder::padded_loss(const Tensor& features, const PaddedBatch& batch,
                                        double alpha_c, Generator& gen) const {
  CAPTION_CHECK(features.dim() == 3, "decoder: features must be [B, P, D], got ", features.describe());
  const int64_t B = features.size(0), P = features.size(1);
  CAPTION_CHECK(batch.words.dim() == 2 && batch.words.size(1) == B &&
                    batch.targets.numel() == batch.words.numel() &&
                    batch.active.numel() == batch.words.numel() && batch.inv_words.numel() == 1,
                "decoder: a padded batch for ", B, " rows has words ", batch.words.describe(),
                ", targets ", batch.targets.describe(), " and active ", batch.active.describe());
  const AttentionGrid grid = AttentionGrid::of(P, encoder_size_);
  const int64_t T = batch.words.size(0);
  const int64_t A = full_att.weight.size(1);
  const AttentionOptions att_options = attention_options(activation_);
  const Tensor full_att_w = full_att.weight.reshape({A});

  const Tensor enc_proj = encoder_att.forward(features);  // [B, P, A]
  const Tensor mean_a = mean(features, {1});              // [B, D]
  LstmState state{init_h.forward(mean_a), init_c.forward(mean_a)};
  // The products as forward() arranges them, over all B rows.
  StepProducts products(*this);
  RecurrentLinear &h_in = products.h_in, &context_in = products.context_in;
  const std::vector<int64_t>& h_blocks = products.h_blocks;
  StepViews enc_rows(enc_proj), feature_rows(features);
  const Tensor word_gates = linear(embedding.forward(batch.words), products.w_ih_word);  // [T, B, 4H]
  StepViews word_steps(word_gates);
  const auto all_rows = [B](const Tensor& x) { return x.narrow(0, 0, B); };

  std::vector<Tensor> hidden;
  Tensor alpha_sum;  // [B, P]: sum over the steps each row decodes
  for (int64_t t = 0; t < T; ++t) {
    const Tensor word_gate = word_steps.view([t](const Tensor& x) { return x.select(0, t); });
    const std::vector<Tensor> from_h = h_in.split(state.h, h_blocks);
    // The running sum adds alpha times the row's mask (0 once its caption has ended).
    AttentionRunningSum running{true, alpha_sum, batch.active.select(0, t)};
    const AttentionStepResult att = attention_step(enc_rows.view(all_rows), from_h[0], full_att_w,
                                                   full_att.bias, feature_rows.view(all_rows),
                                                   from_h[1], running, att_options);
    state = lstm_gates({word_gate, context_in(att.z), from_h[2]}, state.c);
    hidden.push_back(dropout.forward(state.h, gen));
    alpha_sum = att.alpha_sum;  // [B, P]
  }
  const Tensor logits = fc.forward(concat(hidden, 0));  // [T * B, V], time-major
  LossParts parts;
  CrossEntropyOptions ce;
  ce.ignore_index = kPadId;
  ce.reduction = Reduction::Sum;
  parts.cross_entropy = mul(cross_entropy(logits, batch.targets, ce), batch.inv_words);
  // On the full grid each distinct cell's alpha is spread over r*r cells as alpha / r^2:
  // the mean over (b, p) of (1 - sum_t alpha)^2 is the same over the distinct cells.
  const double r2 = static_cast<double>(grid.repeat() * grid.repeat());
  const Tensor full_sum = r2 == 1.0 ? alpha_sum : mul(alpha_sum, 1.0 / r2);
  const Tensor gap = sub(Tensor::ones({}, full_sum.dtype(), full_sum.device()), full_sum);
  parts.attention = mul(mean(mul(gap, gap)), alpha_c);
  parts.total = alpha_c != 0 ? add(parts.cross_entropy, parts.attention) : parts.cross_entropy;
  return parts;
}

DecoderState AttentionDecoder::init_state(const Tensor& features) const {
  CAPTION_CHECK(features.dim() == 3, "decoder: features must be [K, P, D], got ", features.describe());
  AttentionGrid::of(features.size(1), encoder_size_);  // refuses a position count that fits no grid
  DecoderState s;
  const Tensor mean_a = mean(features, {1});
  s.h = init_h.forward(mean_a);
  s.c = init_c.forward(mean_a);
  s.features = features;
  s.enc_proj = encoder_att.forward(features);
  s.h_weight = concat({decoder_att.weight, f_beta.weight, lstm.weight_hh}, 0);
  s.h_bias = concat({decoder_att.bias, f_beta.bias, lstm.bias_hh}, 0);
  return s;
}

StepOutput AttentionDecoder::step(const Tensor& tokens, DecoderState& state) const {
  CAPTION_CHECK(state.h_weight.defined(), "decoder step: the state has no stacked weights (make it with init_state)");
  Step st = attend_and_update(embedding.forward(tokens), state);
  state.h = st.state.h;
  state.c = st.state.c;
  // Decoding is inference: dropout is the identity there, so it is not applied.
  return {log_softmax(fc.forward(state.h), -1), st.alpha};
}

CaptionModel::CaptionModel(const ModelConfig& config, Generator& gen)
    : encoder(resnet_spec(config.encoder_depth()), gen), decoder(config, gen), config_(config) {
  config_.validate();
  register_module("encoder", encoder);
  register_module("decoder", decoder);
  apply_fine_tune();
}

namespace {
// [B, D, h, w] -> [B, h*w, D], position-major.
Tensor position_major(const Tensor& maps) {
  const int64_t B = maps.size(0), D = maps.size(1);
  return maps.permute({0, 2, 3, 1}).reshape({B, maps.size(2) * maps.size(3), D});
}
}  // namespace

namespace {
std::mutex& runner_creation() {
  static std::mutex m;
  return m;
}
}  // namespace

std::shared_ptr<EncoderRunner> CaptionModel::encoder_runner() const {
  std::lock_guard lock(runner_creation());
  return encoder_runner_;
}

Tensor CaptionModel::trunk(const Tensor& images) const {
  if (!EncoderRunner::eligible(encoder, images)) return encoder.forward(images);
  std::shared_ptr<EncoderRunner> runner;
  {
    std::lock_guard lock(runner_creation());
    if (!encoder_runner_) encoder_runner_ = std::make_shared<EncoderRunner>();
    runner = encoder_runner_;
  }
  return runner->forward(encoder, images);
}

Tensor CaptionModel::encode(const Tensor& images) const { return pooled_features(trunk(images)); }

Tensor CaptionModel::encode(const Tensor& images, const FoldedResNet* folded) const {
  return pooled_features(folded ? folded_trunk(images, *folded) : trunk(images));
}

Tensor CaptionModel::pooled_features(const Tensor& maps) const {
  const int64_t S = config_.encoder_size;
  return position_major(adaptive_avg_pool2d(maps, {S, S}));  // [B, S*S, D]
}

Tensor CaptionModel::folded_trunk(const Tensor& images, const FoldedResNet& folded) const {
  CAPTION_CHECK(&folded.source() == &encoder,
                "CaptionModel: the folded trunk is a snapshot of another model's encoder");
  return folded.forward(images);
}

Tensor CaptionModel::encode_distinct(const Tensor& images) const {
  return distinct_features(trunk(images));
}

Tensor CaptionModel::encode_distinct(const Tensor& images, const FoldedResNet* folded) const {
  return distinct_features(folded ? folded_trunk(images, *folded) : trunk(images));
}

Tensor CaptionModel::distinct_features(const Tensor& maps) const {
  const int64_t S = config_.encoder_size;
  const int64_t k = maps.size(2);
  if (maps.size(3) == k && k < S && S % k == 0) return position_major(maps);
  return pooled_features(maps);
}

AttentionGrid AttentionGrid::of(int64_t positions, int64_t encoder_size) {
  const int64_t S = encoder_size;
  CAPTION_CHECK(S >= 1, "attention grid: encoder_size must be positive, got ", S);
  if (positions == S * S) return {S, S};
  int64_t k = 1;
  while (k * k < positions) ++k;
  CAPTION_CHECK(k * k == positions && S % k == 0, "decoder: features hold ", positions,
                " positions, which is neither the ", S, "x", S, " grid of encoder_size ", S,
                " (", S * S, ") nor a k x k grid with k dividing ", S);
  return {S, k};
}

Tensor AttentionGrid::expand(const Tensor& alpha) const {
  if (!compact()) return alpha;
  const int64_t r = repeat();
  std::vector<int64_t> source(static_cast<size_t>(side * side));
  for (int64_t row = 0; row < side; ++row)
    for (int64_t col = 0; col < side; ++col) source[row * side + col] = (row / r) * distinct + col / r;
  const Tensor index =
      Tensor::from_vector<int64_t>(source, {side * side}).to(alpha.device());
  const Tensor spread = index_select(alpha, alpha.dim() - 1, index);
  return mul(spread, 1.0 / static_cast<double>(r * r));
}

std::vector<float> AttentionGrid::expand(const float* alpha) const {
  const int64_t r = repeat();
  std::vector<float> out(static_cast<size_t>(side * side));
  const float inv = 1.0f / static_cast<float>(r * r);
  for (int64_t row = 0; row < side; ++row)
    for (int64_t col = 0; col < side; ++col)
      out[row * side + col] = compact() ? alpha[(row / r) * distinct + col / r] * inv : alpha[row * side + col];
  return out;
}

void CaptionModel::apply_fine_tune() {
  const FineTune& f = config_.fine_tune;
  encoder.set_frozen(f.kind != FineTune::Kind::All);
  if (f.kind == FineTune::Kind::From)
    for (int layer = f.from_layer; layer <= 4; ++layer) encoder.stage(layer).set_frozen(false);
}

void CaptionModel::calibrate_batch_norm(const std::function<Tensor()>& next) {
  NoGradGuard no_grad;
  const Mode mode = encoder.mode();
  std::vector<BatchNorm2d*> norms;
  for (Module* m : encoder.modules())
    if (auto* bn = dynamic_cast<BatchNorm2d*>(m)) norms.push_back(bn);
  std::vector<double> momentum;
  for (BatchNorm2d* bn : norms) {
    momentum.push_back(bn->momentum);
    bn->running_mean.zero_();
    bn->running_var.fill_(1.0);
  }
  encoder.set_frozen(false);  // frozen batch norm would ignore training mode
  encoder.train();
  int batches = 0;
  for (Tensor images = next(); images.defined(); images = next()) {
    // Cumulative average: batch k contributes with weight 1 / (k + 1).
    for (BatchNorm2d* bn : norms) bn->momentum = 1.0 / static_cast<double>(batches + 1);
    encoder.forward(images);
    ++batches;
  }
  CAPTION_CHECK(batches > 0, "batch-norm calibration: no images");
  for (size_t i = 0; i < norms.size(); ++i) norms[i]->momentum = momentum[i];
  apply_fine_tune();
  encoder.set_mode(mode);
}

LossParts caption_loss(const DecoderOutput& out, double alpha_c) {
  LossParts parts;
  // Every target of forward() is a word it checked on the host (none is ignored).
  CrossEntropyOptions ce;
  ce.known_valid_rows = out.targets.numel();
  parts.cross_entropy = cross_entropy(out.logits, out.targets, ce);
  const Tensor alpha_sum = sum(out.alphas, {1});  // [B, P]
  const Tensor one = Tensor::ones({}, alpha_sum.dtype(), alpha_sum.device());
  const Tensor gap = sub(one, alpha_sum);
  parts.attention = mul(mean(mul(gap, gap)), alpha_c);
  parts.total = alpha_c != 0 ? add(parts.cross_entropy, parts.attention) : parts.cross_entropy;
  return parts;
}

}  // namespace caption::nn
