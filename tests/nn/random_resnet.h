// Shared by the encoder tests (fold_test, nhwc_encoder_test): a relative L2 error, and
// batch norms with non-trivial affine parameters and running statistics, so that every
// part of a fold (gamma, beta, mean, var) matters.
#pragma once

#include <cmath>
#include <vector>

#include "nn/resnet.h"

namespace caption::nn::test_resnet {

// ||got - ref|| / ||ref|| over every element (any dtype, any device).
inline double rel_l2(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g =
      got.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  const std::vector<double> r =
      ref.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  if (g.size() != r.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / den);
}

inline std::vector<BatchNorm2d*> batch_norms(Module& m) {
  std::vector<BatchNorm2d*> out;
  for (Module* sub : m.modules())
    if (auto* bn = dynamic_cast<BatchNorm2d*>(sub)) out.push_back(bn);
  return out;
}

inline void randomise_batch_norms(Module& m, Generator& gen) {
  NoGradGuard no_grad;
  for (BatchNorm2d* bn : batch_norms(m)) {
    const int64_t C = bn->weight.size(0);
    const DType d = bn->weight.dtype();
    bn->weight.copy_(rand_uniform({C}, 0.5, 1.5, gen, d));
    bn->bias.copy_(rand_normal({C}, 0.0, 0.2, gen, d));
    bn->running_mean.copy_(rand_normal({C}, 0.0, 0.3, gen, d));
    bn->running_var.copy_(rand_uniform({C}, 0.3, 3.0, gen, d));
  }
}

}  // namespace caption::nn::test_resnet
