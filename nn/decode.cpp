// Greedy decoding and the shrinking beam search of MODEL_SPEC section 6. Both run the
// decoder step on a batch of rows (images for greedy, live hypotheses for a beam) with
// autograd off, through a StepRunner (nn/step_graph.h: CUDA graphs on a GPU); the
// encoder features and encoder_att(features) are computed once per image (init_state)
// and gathered, not recomputed, when hypotheses are reordered.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/cpu/reduce.h"
#include "nn/caption_model.h"
#include "nn/step_graph.h"

namespace caption::nn {

namespace {

bool is_special(int64_t id) { return id < kSpecialTokens; }

// Appends a decoded token to a result, leaving out special tokens and their data.
// The word's attention is reported on the full S x S grid whatever the features hold.
void append_token(DecodedCaption& c, int64_t token, float log_prob, const float* alpha,
                  const AttentionGrid& grid) {
  c.score += log_prob;
  ++c.steps;
  if (is_special(token)) return;
  c.tokens.push_back(token);
  c.log_probs.push_back(log_prob);
  c.attention.push_back(grid.expand(alpha));
}

// The state's rows in a new order (a beam's surviving hypotheses, greedy's live rows):
// one index tensor, copied to the device once, for the four tensors.
void select_rows(DecoderState& s, const Tensor& index) {
  s.h = index_select(s.h, 0, index);
  s.c = index_select(s.c, 0, index);
  s.features = index_select(s.features, 0, index);
  s.enc_proj = index_select(s.enc_proj, 0, index);
}

void select_rows(DecoderState& s, const std::vector<int64_t>& rows) {
  select_rows(s, Tensor::from_vector<int64_t>(rows, {static_cast<int64_t>(rows.size())}).to(s.h.device()));
}

}  // namespace

std::vector<DecodedCaption> greedy_decode(const AttentionDecoder& decoder, const Tensor& features,
                                          int max_len, int lookahead) {
  CAPTION_CHECK(max_len > 0, "greedy decoding: max_len must be positive, got ", max_len);
  CAPTION_CHECK(lookahead >= 1, "greedy decoding: lookahead must be at least 1, got ", lookahead);
  NoGradGuard no_grad;
  const int64_t B = features.size(0);
  DecoderState state = decoder.init_state(features);
  StepRunnerLease lease(decoder, features.device());
  StepRunner& runner = lease.runner();
  // With graphs, every step keeps all B rows (a finished row is fed its own arg-max and
  // its results are ignored), so that one graph serves the whole caption, and the next
  // tokens stay on the device; without, finished rows are dropped from the batch. Rows
  // do not interact: the results are the same.
  const bool fixed_rows = runner.graphs();
  std::vector<DecodedCaption> results(B);
  std::vector<int64_t> live(B);  // result index of each row in the batch
  std::iota(live.begin(), live.end(), 0);
  std::vector<int64_t> tokens(B, kSosId);
  Tensor device_tokens;  // fixed rows, after the first step: the previous arg-max
  // A step reads back only its arg-max ids (to know which rows finished); the chosen
  // tokens' log-probabilities and attention stay on the device until the caption ends.
  struct Chosen {
    int64_t result, step, row, token;
  };
  std::vector<Chosen> chosen;
  std::vector<Tensor> step_log_probs, step_alphas;  // [K], [K, P] per step
  std::vector<int64_t> step_offset;                 // first row of each step in their concatenation
  int64_t rows_so_far = 0;
  // With fixed rows and the tokens on the device, steps need nothing from the host: up to
  // `lookahead` of them are queued back to back and their ids read back at once, one
  // synchronisation per chunk instead of per word. Steps past the point where every row
  // has ended are computed and ignored (at most lookahead - 1 of them).
  bool done = false;
  for (int step = 0; step < max_len && !live.empty() && !done;) {
    const int64_t K = static_cast<int64_t>(live.size());
    const int chunk = device_tokens.defined() ? std::min(lookahead, max_len - step) : 1;
    std::vector<Tensor> ids;
    for (int s = 0; s < chunk; ++s) {
      StepOutput out = device_tokens.defined() ? runner.step(device_tokens, state) : runner.step(tokens, state);
      // Arg-max on the device: K ids come back, not the rows' V log-probs (on a GPU at
      // batch 64, 2.5 MB per word). Exact ties go to the lowest id.
      const MaxResult best_of = max_last(out.log_probs);
      ids.push_back(best_of.indices);
      step_log_probs.push_back(best_of.values);
      step_alphas.push_back(fixed_rows ? out.alpha.clone() : out.alpha);  // a graph rewrites its own
      step_offset.push_back(rows_so_far);
      rows_so_far += K;
      if (fixed_rows) device_tokens = best_of.indices;
    }
    const std::vector<int64_t> chunk_ids = (chunk == 1 ? ids[0] : concat(ids, 0)).to_vector<int64_t>();
    for (int s = 0; s < chunk && !done; ++s, ++step) {
      const int64_t* best_id = chunk_ids.data() + s * K;
      std::vector<int64_t> keep, next_tokens, next_live;
      bool any_decoding = false;
      for (int64_t k = 0; k < K; ++k) {
        DecodedCaption& r = results[live[k]];
        if (r.finished) {  // only with fixed rows
          keep.push_back(k);
          next_tokens.push_back(kEosId);
          next_live.push_back(live[k]);
          continue;
        }
        const int64_t best = best_id[k];
        chosen.push_back({live[k], step, k, best});
        if (best == kEosId) r.finished = true;
        if (!r.finished || fixed_rows) {
          keep.push_back(k);
          next_tokens.push_back(r.finished ? kEosId : best);
          next_live.push_back(live[k]);
        }
        any_decoding |= !r.finished;
      }
      if (!any_decoding) {
        done = true;
        break;
      }
      // Without fixed rows a chunk is one step, so the state is still this step's.
      if (next_live.size() != live.size() && !next_live.empty()) select_rows(state, keep);
      live = std::move(next_live);
      tokens = std::move(next_tokens);
    }
  }
  if (chosen.empty()) return results;
  // The chosen tokens' log-probabilities and attention, read back once.
  const int64_t P = step_alphas[0].size(1);
  const AttentionGrid grid = AttentionGrid::of(P, decoder.encoder_size());
  const std::vector<Tensor> host = Tensor::to_host({concat(step_log_probs, 0), concat(step_alphas, 0)});
  const std::vector<float> log_probs = host[0].to_vector<float>();
  const std::vector<float> alphas = host[1].to_vector<float>();
  for (const Chosen& c : chosen) {
    const int64_t at = step_offset[static_cast<size_t>(c.step)] + c.row;
    append_token(results[c.result], c.token, log_probs[at], alphas.data() + at * P, grid);
  }
  return results;
}

std::vector<int64_t> best_extensions(const std::vector<double>& scores, const std::vector<float>& log_probs,
                                     int64_t V, int64_t take) {
  const int64_t K = static_cast<int64_t>(scores.size());
  CAPTION_CHECK(V > 0 && static_cast<int64_t>(log_probs.size()) == K * V && take >= 0,
                "beam search: ", log_probs.size(), " log-probabilities for ", K, " hypotheses of ", V,
                " words");
  take = std::min(take, K * V);
  // A partial sort of all K * V candidates (kernels/cpu/reduce.h): with a heap of `take`
  // elements most comparisons fail at once (~45 us for 3 x 10,000 on the 2-core CPU here;
  // a pass per hypothesis keeping its own best was slower, 53 us).
  std::vector<int64_t> order(static_cast<size_t>(take));
  std::vector<float> chosen(static_cast<size_t>(take));
  kernels::cpu::top_extensions<float>(log_probs.data(), scores.data(), K, V, take, order.data(),
                                      chosen.data());
  return order;
}

DecodedCaption beam_search(const AttentionDecoder& decoder, const Tensor& features_in,
                           const DecodeOptions& options) {
  CAPTION_CHECK(options.beam >= 1, "beam search: width must be at least 1, got ", options.beam);
  CAPTION_CHECK(options.max_len > 0, "beam search: max_len must be positive, got ", options.max_len);
  NoGradGuard no_grad;
  const Tensor features = features_in.dim() == 2 ? features_in.unsqueeze(0) : features_in;
  CAPTION_CHECK(features.dim() == 3 && features.size(0) == 1,
                "beam search: expected one image's features [1, P, D], got ", features.describe());
  const int k = options.beam;
  const Device device = features.device();
  DecoderState state = decoder.init_state(features);
  // A hypothesis, and for each of its words the row of its attention in the
  // concatenation of the steps' alphas, which stay where the step left them until the
  // end: a step reads back only its choice (top_extensions: 2 x (k - finished) numbers)
  // instead of the K x V log-probabilities and K x P alphas.
  struct Hypothesis {
    DecodedCaption caption;
    std::vector<int64_t> alpha_rows;
  };
  std::vector<Hypothesis> live(1);
  std::vector<Hypothesis> finished;
  std::vector<Tensor> step_alphas;  // [K, P] per step
  int64_t rows_so_far = 0;
  // What the next step needs stays on the device: the live hypotheses' scores (the
  // chosen extensions' scores, gathered) and their tokens. After reading back a step's
  // choice, one copy to the device carries the rows to keep, their tokens and which
  // choices they are: two synchronisations a step, the second with the device idle.
  Tensor base = Tensor::zeros({1}, DType::F64, device);
  Tensor device_tokens;  // undefined at the first step (<sos> from the host)
  StepRunnerLease lease(decoder, device);
  StepRunner& runner = lease.runner();
  for (int step = 0; step < options.max_len && !live.empty() &&
                     static_cast<int>(finished.size()) < k; ++step) {
    const int64_t K = static_cast<int64_t>(live.size());
    StepOutput out = device_tokens.defined() ? runner.step(device_tokens, state)
                                             : runner.step(std::vector<int64_t>{kSosId}, state);
    const int64_t V = out.log_probs.size(1);
    step_alphas.push_back(runner.graphs() ? out.alpha.clone() : out.alpha);  // a graph rewrites its own
    const int64_t first_row = rows_so_far;
    rows_so_far += K;
    // The (k - finished) best one-token extensions of all live hypotheses, by the sum
    // of log-probabilities; ties broken by hypothesis, then token id (so that k = 1 is
    // exactly greedy's lowest-id rule).
    const int64_t want = k - static_cast<int64_t>(finished.size());
    const TopExtensions top = top_extensions(out.log_probs, base, want);
    const std::vector<Tensor> host = Tensor::to_host({top.indices, top.log_probs});  // one wait
    const std::vector<int64_t> order = host[0].to_vector<int64_t>();
    const std::vector<float> chosen_lp = host[1].to_vector<float>();
    std::vector<Hypothesis> next;
    std::vector<int64_t> rows, next_tokens, kept;
    for (size_t j = 0; j < order.size(); ++j) {
      const int64_t hyp = order[j] / V, token = order[j] % V;
      Hypothesis h = live[hyp];
      DecodedCaption& c = h.caption;
      c.score += chosen_lp[j];
      ++c.steps;
      if (!is_special(token)) {
        c.tokens.push_back(token);
        c.log_probs.push_back(chosen_lp[j]);
        h.alpha_rows.push_back(first_row + hyp);
      }
      if (token == kEosId) {
        c.finished = true;
        finished.push_back(std::move(h));
      } else {
        next.push_back(std::move(h));
        rows.push_back(hyp);
        next_tokens.push_back(token);
        kept.push_back(static_cast<int64_t>(j));
      }
    }
    if (!next.empty()) {
      const int64_t n = static_cast<int64_t>(next.size());
      std::vector<int64_t> packed = rows;
      packed.insert(packed.end(), next_tokens.begin(), next_tokens.end());
      packed.insert(packed.end(), kept.begin(), kept.end());
      const Tensor carried = Tensor::from_vector<int64_t>(packed, {3, n}).to(device);
      select_rows(state, carried.select(0, 0));
      // Ids the search chose from the step's own V columns: in the vocabulary.
      device_tokens = carried.select(0, 1);
      // The kept choices' scores: each equals the host's caption.score (the same double
      // additions), so the search's order is the host's.
      base = index_select(top.scores, 0, carried.select(0, 2));
    }
    live = std::move(next);
  }
  // The result: the best finished hypothesis by its length-normalised score, or, when
  // none finished within max_len, the live one with the best raw score.
  const Hypothesis* best = nullptr;
  if (finished.empty()) {
    CAPTION_ASSERT(!live.empty());
    best = &*std::max_element(live.begin(), live.end(), [](const auto& a, const auto& b) {
      return a.caption.score < b.caption.score;
    });
  } else {
    // Length normalisation: L counts every decoded token, the final <eos> included.
    auto normalised = [&](const DecodedCaption& c) {
      if (options.length_penalty == 0) return c.score;
      const double L = static_cast<double>(c.steps);
      return c.score / std::pow(L, options.length_penalty);
    };
    best = &finished[0];
    for (size_t i = 1; i < finished.size(); ++i)
      if (normalised(finished[i].caption) > normalised(best->caption)) best = &finished[i];
  }
  DecodedCaption result = best->caption;
  if (!best->alpha_rows.empty()) {
    const int64_t P = step_alphas[0].size(1);
    const AttentionGrid grid = AttentionGrid::of(P, decoder.encoder_size());
    const std::vector<float> alphas = concat(step_alphas, 0).to_vector<float>();
    for (int64_t row : best->alpha_rows) result.attention.push_back(grid.expand(alphas.data() + row * P));
  }
  return result;
}

std::vector<DecodedCaption> decode(const AttentionDecoder& decoder, const Tensor& features,
                                   const DecodeOptions& options) {
  if (options.beam == 1) return greedy_decode(decoder, features, options.max_len, options.lookahead);
  std::vector<DecodedCaption> out;
  for (int64_t b = 0; b < features.size(0); ++b)
    out.push_back(beam_search(decoder, features.narrow(0, b, 1), options));
  return out;
}

}  // namespace caption::nn
