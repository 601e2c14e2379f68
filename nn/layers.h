// The layers of the model, as PyTorch defines them (same parameter names, shapes and
// default initialisation distributions, drawn from the engine's seeded Generator).
#pragma once

#include <optional>

#include "engine/engine.h"
#include "nn/module.h"

namespace caption::nn {

enum class Bias { No, Yes };

// y = x W^T + b. weight [out, in], bias [out]. Init: U(-1/sqrt(in), 1/sqrt(in)), as
// torch.nn.Linear's kaiming_uniform(a = sqrt(5)) works out to.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, Generator& gen, Bias bias = Bias::Yes);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] (undefined without bias)
};

// torchvision-style convolution (no bias by default in ResNet). weight [O, C, kh, kw].
// Init: kaiming_normal(mode = fan_out, relu) as torchvision's ResNet does.
struct Conv2dSpec {
  int64_t in = 0, out = 0;
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  Bias bias = Bias::No;
};
class Conv2d : public Module {
 public:
  Conv2d(const Conv2dSpec& spec, Generator& gen);
  Tensor forward(const Tensor& x) const;
  Conv2dOptions options() const;  // stride, padding and dilation of the spec
  Conv2dSpec spec;
  Tensor weight;  // [O, C, k, k]
  Tensor bias;    // [O] or undefined
};

// Batch norm over [B, C, H, W]: weight 1, bias 0, running_mean 0, running_var 1.
// In Train mode it uses batch statistics and updates the running ones (momentum 0.1,
// unbiased variance); in Eval mode, or whenever frozen, it uses the running ones.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) const;
  // Eval mode or frozen: forward normalises with (and leaves alone) the running statistics.
  bool uses_running_stats() const { return !training() || frozen(); }
  Tensor weight, bias;               // [C]
  Tensor running_mean, running_var;  // [C] (buffers)
  double eps, momentum;
};

// Embedding [V, E], N(0, 1) init as torch.nn.Embedding; the padding row is zero and
// receives no gradient.
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, Generator& gen, std::optional<int64_t> padding_idx = std::nullopt);
  Tensor forward(const Tensor& ids) const { return embedding(weight, ids, padding_idx); }
  Tensor weight;  // [V, E]
  std::optional<int64_t> padding_idx;
};

// Dropout with the module's mode; masks come from the generator passed at each call.
class Dropout : public Module {
 public:
  explicit Dropout(double probability) : p(probability) {}
  Tensor forward(const Tensor& x, Generator& gen) const {
    return dropout(x, p, gen, training() ? DropoutMode::Train : DropoutMode::Eval);
  }
  double p;
};

// torch.nn.LSTMCell: weight_ih [4H, I], weight_hh [4H, H], bias_ih, bias_hh [4H], gate
// order i, f, g, o; init U(-1/sqrt(H), 1/sqrt(H)).
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t input, int64_t hidden, Generator& gen);
  LstmState forward(const Tensor& x, const LstmState& state) const {
    return lstm_cell(x, state.h, state.c, weight_ih, weight_hh, bias_ih, bias_hh);
  }
  int64_t hidden_size() const { return weight_hh.size(1); }
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

}  // namespace caption::nn
