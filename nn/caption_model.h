// The captioning model of MODEL_SPEC sections 3-6: a ResNet encoder with adaptive
// pooling to an S x S grid, and an LSTM decoder with additive attention, its training
// loss, and greedy and beam-search decoding.
//
// Training runs the decoder over a batch sorted by caption length, shrinking the active
// rows as captions end (packed sequences: finished rows cost nothing). Under full
// teacher forcing the embeddings of all steps are looked up at once and the vocabulary
// projection runs once over all steps' hidden states; with scheduled sampling both
// happen per step, since a step's input depends on the previous step's prediction.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/resnet.h"

namespace caption::nn {

inline constexpr int64_t kPadId = 0, kSosId = 1, kEosId = 2, kUnkId = 3;
inline constexpr int64_t kSpecialTokens = 4;

// Decoder inputs for one batch, sorted by length (descending).
struct CaptionBatch {
  Tensor captions;               // [B, L] int64: <sos> w1 .. wn <eos> <pad>...
  std::vector<int64_t> lengths;  // [B] tokens per caption incl. <sos> and <eos>
};

struct DecoderOutput {
  Tensor logits;                     // [N, V], packed step-major: step t holds rows 0..bt-1
  Tensor targets;                    // [N] int64, the word each row is scored against (all
                                     // checked words: caption_loss reads none back)
  Tensor alphas;                     // [B, T, P], zero where a caption has ended
  std::vector<int64_t> batch_sizes;  // bt per step
};

struct LossParts {
  Tensor total;          // scalar
  Tensor cross_entropy;  // scalar, mean over valid (b, t)
  Tensor attention;      // scalar, alpha_c * mean over (b, p) of (1 - sum_t alpha)^2
};

// A batch laid out for a training step of fixed shapes (nn/train_graph.h): B rows and
// T steps whatever the captions' lengths. A row whose caption has ended keeps its place
// and is masked instead of dropped, so one recorded step serves every batch of B
// captions with at most T + 1 tokens.
struct PaddedBatch {
  Tensor words;      // [T, B] int64, time-major: the input word of row b at step t
  Tensor targets;    // [T * B] int64, time-major: the word (t, b) is scored against,
                     // kPadId (ignored by the loss) once row b's caption has ended
  Tensor active;     // [T, B, 1] float32: 1 while row b decodes at step t, else 0
  Tensor inv_words;  // [] float32: 1 / the number of scored (t, b)
  // On `device`, for `steps` >= the batch's own steps (lengths[0] - 1), from a batch
  // sorted by length as forward() takes it.
  static PaddedBatch of(const CaptionBatch& batch, int64_t steps, Device device);
};

// The decoder's recurrent state for decoding.
struct DecoderState {
  Tensor h, c;        // [K, H]
  Tensor features;    // [K, P, D]
  Tensor enc_proj;    // [K, P, A] = encoder_att(features), once per image
  // Everything a step multiplies h by, stacked once per decoding call (init_state):
  // decoder_att, f_beta and the LSTM's recurrent half, [A + D + 4H, H] and their biases,
  // so that a step reads h in one product. Not per row: row selections leave it alone.
  Tensor h_weight, h_bias;
};

struct StepOutput {
  Tensor log_probs;  // [K, V]
  Tensor alpha;      // [K, P'] over the features' own positions (see AttentionGrid)
};

// The attention positions of a features tensor. MODEL_SPEC's features hold the S x S
// cells of the adaptive pool (P = S*S). When the encoder's map is k x k with S a
// multiple of k (ResNet at 224x224 gives 7x7, pooled to S = 14), the pool only repeats
// each cell r x r times (r = S / k): the k*k distinct cells carry everything. Attending
// over them gives exactly the same context (each distinct score appears r*r times in
// the softmax, so alpha over S*S is alpha over k*k divided by r*r, repeated), and the
// same init_h/init_c (the mean is unchanged), at 1/r^2 of the attention's work and
// memory traffic per step. Features may hold either form; the decoder reports alphas on
// the full S x S grid in both cases, so losses, attention maps and every output are
// those of the general path.
struct AttentionGrid {
  int64_t side = 0;      // S
  int64_t distinct = 0;  // k: the features hold k*k positions (k == S: all of them)

  // The grid of features with `positions` rows for encoder_size S; refuses a count that
  // is neither S*S nor k*k for a k dividing S.
  static AttentionGrid of(int64_t positions, int64_t encoder_size);
  int64_t repeat() const { return side / distinct; }
  bool compact() const { return distinct != side; }
  // alpha [..., k*k] -> [..., S*S] (differentiable); the identity when not compact.
  Tensor expand(const Tensor& alpha) const;
  // One alpha row of k*k values -> S*S values.
  std::vector<float> expand(const float* alpha) const;
};

struct StepRunnerCache;  // nn/step_graph.h
class EncoderRunner;     // nn/encoder_graph.h
class FoldedResNet;      // nn/folded_resnet.h

class AttentionDecoder : public Module {
 public:
  AttentionDecoder(const ModelConfig& config, Generator& gen);

  // Teacher-forced (or scheduled-sampling) forward pass over a batch.
  DecoderOutput forward(const Tensor& features /*[B, P, D]*/, const CaptionBatch& batch,
                        double teacher_forcing, Generator& gen) const;

  // The training loss of forward() + caption_loss() under full teacher forcing, with
  // fixed shapes: all B rows for T steps, finished rows masked (their loss ignored, their
  // attention excluded), the attention term summed on the features' own positions (the
  // same value as on the full grid). Equal to the packed path up to the order of float
  // sums, and to itself bit for bit eagerly or recorded: it reads nothing on the host
  // and copies nothing between host and device (with DeviceIndexChecksOff, as while
  // recording). Dropout draws B * H numbers per step (the packed path draws bt * H), so
  // with dropout the two draw different masks.
  LossParts padded_loss(const Tensor& features /*[B, P, D]*/, const PaddedBatch& batch,
                        double alpha_c, Generator& gen) const;

  // Decoding: the initial state for features, then one step from the previous tokens.
  DecoderState init_state(const Tensor& features) const;
  StepOutput step(const Tensor& tokens /*[K] int64*/, DecoderState& state) const;
  // S, the side of the attention grid that alphas are reported on.
  int64_t encoder_size() const { return encoder_size_; }

  Embedding embedding;
  Linear encoder_att, decoder_att, full_att, init_h, init_c, f_beta;
  LSTMCell lstm;
  Dropout dropout;
  Linear fc;

  // The step graphs of decoding (nn/step_graph.h), kept between calls so that captioning
  // image after image replays rather than recaptures; created by the first decode on a
  // CUDA device. Copies of the decoder share it (a runner checks that the weights it
  // captured are the ones it is asked to run).
  std::shared_ptr<StepRunnerCache> step_cache() const;

 private:
  mutable std::shared_ptr<StepRunnerCache> step_cache_;
  // One decoder step on the first `rows` rows; returns the new (h, c) and alpha.
  struct Step {
    LstmState state;
    Tensor alpha;
  };
  Step attend_and_update(const Tensor& emb /*[rows, E]*/, const DecoderState& state) const;
  AttentionActivation activation_;
  int64_t encoder_size_;
};

class CaptionModel : public Module {
 public:
  CaptionModel(const ModelConfig& config, Generator& gen);
  const ModelConfig& config() const { return config_; }

  // images [B, 3, H, W] -> features [B, P, D], position-major (p = row * S + col).
  Tensor encode(const Tensor& images) const;
  // The same features with only their distinct positions when the pool merely repeats
  // the encoder's cells (AttentionGrid): [B, k*k, D]; otherwise exactly encode(). What
  // the pipeline trains and decodes on: every decoder output is unchanged.
  Tensor encode_distinct(const Tensor& images) const;
  // encode and encode_distinct with the trunk's pass through `folded`, a snapshot of this
  // model's encoder (nn/folded_resnet.h): the same features with every batch norm folded.
  // Null: the trunk's own pass (what inference_snapshot returns when folding is off).
  Tensor encode(const Tensor& images, const FoldedResNet* folded) const;
  Tensor encode_distinct(const Tensor& images, const FoldedResNet* folded) const;
  // Freezes the encoder per config().fine_tune (MODEL_SPEC section 3).
  void apply_fine_tune();
  // Sets the encoder's batch-norm running statistics from data: the trunk runs in
  // training mode, without gradients, over the batches `next` yields (until it returns
  // an undefined tensor), and each statistic becomes the average over those batches
  // (PyTorch's momentum = None). Weights are untouched. This is what makes a randomly
  // initialised encoder usable as a frozen feature extractor when no pretrained weights
  // are at hand (the synthetic demo): every layer's output is then normalised for the
  // data it sees instead of growing layer after layer.
  void calibrate_batch_norm(const std::function<Tensor()>& next);

  // The encoder's inference passes as device graphs (nn/encoder_graph.h): encode() and
  // encode_distinct() go through it where it is eligible (no gradients, Eval mode, a
  // CUDA device with graphs on). Null until the first such pass.
  std::shared_ptr<EncoderRunner> encoder_runner() const;

  ResNet encoder;
  AttentionDecoder decoder;

 private:
  Tensor trunk(const Tensor& images) const;  // encoder.forward, through the runner if eligible
  // The trunk's maps [B, D, k, k] pooled to S x S (encode), or their distinct positions
  // (encode_distinct).
  Tensor pooled_features(const Tensor& maps) const;
  Tensor distinct_features(const Tensor& maps) const;
  // The trunk's pass through `folded`, refused unless it is a snapshot of this encoder.
  Tensor folded_trunk(const Tensor& images, const FoldedResNet& folded) const;
  ModelConfig config_;
  mutable std::shared_ptr<EncoderRunner> encoder_runner_;
};

// The training objective of MODEL_SPEC section 5.
LossParts caption_loss(const DecoderOutput& out, double alpha_c);

// ---- decoding (MODEL_SPEC section 6) ----

struct DecodedCaption {
  std::vector<int64_t> tokens;               // words only (no special tokens)
  std::vector<float> log_probs;              // per word
  std::vector<std::vector<float>> attention; // per word, [P]
  double score = 0;     // sum of log-probabilities of all decoded tokens (incl. <eos>)
  bool finished = false;  // ended with <eos>
  int steps = 0;          // decoded tokens, special ones and the final <eos> included
};

struct DecodeOptions {
  int max_len = 50;           // decode steps, the <eos> step included
  int beam = 1;               // 1 = greedy
  double length_penalty = 0;  // finished scores divided by L^length_penalty
  // Greedy decoding with CUDA graphs: steps queued before their words are read back
  // (one synchronisation per `lookahead` words; at most lookahead - 1 steps computed
  // past the last caption's end). Results do not depend on it.
  int lookahead = 4;
};

// Greedy decoding of a batch of images' features [B, P, D].
std::vector<DecodedCaption> greedy_decode(const AttentionDecoder& decoder, const Tensor& features,
                                          int max_len, int lookahead = 4);
// Shrinking-beam search for one image's features [1, P, D] (or [P, D]).
DecodedCaption beam_search(const AttentionDecoder& decoder, const Tensor& features,
                           const DecodeOptions& options);
// Beam search's choice: the `take` best one-token extensions of K hypotheses (score of
// hypothesis h + log_probs[h * V + v]), as flat indices h * V + v, best first, ties to
// the lower index (so that a width of 1 is greedy's lowest-id rule).
std::vector<int64_t> best_extensions(const std::vector<double>& scores, const std::vector<float>& log_probs,
                                     int64_t V, int64_t take);
// Greedy when beam == 1, else beam search per image.
std::vector<DecodedCaption> decode(const AttentionDecoder& decoder, const Tensor& features,
                                   const DecodeOptions& options);

}  // namespace caption::nn
