// Layer construction and initialisation.
#include "nn/layers.h"

#include <cmath>

namespace caption::nn {

Linear::Linear(int64_t in, int64_t out, Generator& gen, Bias b) {
  CAPTION_CHECK(in > 0 && out > 0, "Linear(", in, ", ", out, "): sizes must be positive");
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = make_parameter(rand_uniform({out, in}, -bound, bound, gen));
  register_parameter("weight", weight);
  if (b == Bias::Yes) {
    bias = make_parameter(rand_uniform({out}, -bound, bound, gen));
    register_parameter("bias", bias);
  }
}

Conv2d::Conv2d(const Conv2dSpec& s, Generator& gen) : spec(s) {
  CAPTION_CHECK(s.in > 0 && s.out > 0 && s.kernel > 0 && s.stride > 0 && s.dilation > 0 &&
                    s.padding >= 0,
                "Conv2d: invalid geometry (in ", s.in, ", out ", s.out, ", kernel ", s.kernel, ")");
  const double stddev = std::sqrt(2.0 / static_cast<double>(s.out * s.kernel * s.kernel));
  weight = make_parameter(rand_normal({s.out, s.in, s.kernel, s.kernel}, 0.0, stddev, gen));
  register_parameter("weight", weight);
  if (s.bias == Bias::Yes) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(s.in * s.kernel * s.kernel));
    bias = make_parameter(rand_uniform({s.out}, -bound, bound, gen));
    register_parameter("bias", bias);
  }
}

Conv2dOptions Conv2d::options() const {
  Conv2dOptions o;
  o.stride = {spec.stride, spec.stride};
  o.padding = {spec.padding, spec.padding};
  o.dilation = {spec.dilation, spec.dilation};
  return o;
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, options()); }

BatchNorm2d::BatchNorm2d(int64_t channels, double eps_, double momentum_)
    : eps(eps_), momentum(momentum_) {
  weight = make_parameter(Tensor::ones({channels}));
  bias = make_parameter(Tensor::zeros({channels}));
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::ones({channels});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  register_buffer("running_mean", running_mean);
  register_buffer("running_var", running_var);
}

Tensor BatchNorm2d::forward(const Tensor& x) const {
  BatchNormOptions o;
  o.mode = uses_running_stats() ? BatchNormOptions::Mode::Eval : BatchNormOptions::Mode::Train;
  o.momentum = momentum;
  o.eps = eps;
  return batch_norm2d(x, weight, bias, running_mean, running_var, o);
}

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, std::optional<int64_t> pad)
    : padding_idx(pad) {
  CAPTION_CHECK(num > 0 && dim > 0, "Embedding(", num, ", ", dim, "): sizes must be positive");
  Tensor w = rand_normal({num, dim}, 0.0, 1.0, gen);
  if (pad) {
    CAPTION_CHECK(*pad >= 0 && *pad < num, "Embedding: padding index ", *pad, " outside [0, ", num, ")");
    w.narrow(0, *pad, 1).zero_();
  }
  weight = make_parameter(w);
  register_parameter("weight", weight);
}

LSTMCell::LSTMCell(int64_t input, int64_t hidden, Generator& gen) {
  CAPTION_CHECK(input > 0 && hidden > 0, "LSTMCell(", input, ", ", hidden, "): sizes must be positive");
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  weight_ih = make_parameter(rand_uniform({4 * hidden, input}, -bound, bound, gen));
  weight_hh = make_parameter(rand_uniform({4 * hidden, hidden}, -bound, bound, gen));
  bias_ih = make_parameter(rand_uniform({4 * hidden}, -bound, bound, gen));
  bias_hh = make_parameter(rand_uniform({4 * hidden}, -bound, bound, gen));
  register_parameter("weight_ih", weight_ih);
  register_parameter("weight_hh", weight_hh);
  register_parameter("bias_ih", bias_ih);
  register_parameter("bias_hh", bias_hh);
}

}  // namespace caption::nn
