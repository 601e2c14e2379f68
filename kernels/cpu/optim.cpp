// Optimiser kernels on the CPU. The arithmetic follows PyTorch's operation order
// (e.g. Adam's denominator is sqrt(v) / sqrt(bc2) + eps, not sqrt(v / bc2) + eps) so
// that float32 results track torch.optim closely; scalars arrive as double and are
// rounded to T once, as PyTorch does when it multiplies a tensor by a Python float.
#include "kernels/cpu/optim.h"

#include <cmath>

namespace caption::kernels::cpu {

template <typename T>
void sgd_step(T* param, const T* grad, T* buf, int64_t n, const SgdScalars& s) {
  const T lr = T(s.lr), momentum = T(s.momentum), wd = T(s.weight_decay);
  const T keep = T(1.0 - s.dampening);
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (s.weight_decay != 0) d += wd * param[i];
    if (buf) {
      buf[i] = s.first_step ? d : momentum * buf[i] + keep * d;
      d = s.nesterov == Nesterov::Yes ? d + momentum * buf[i] : buf[i];
    }
    param[i] -= lr * d;
  }
}

template <typename T>
void adam_step(T* param, const T* grad, T* m, T* v, int64_t n, const AdamScalars& s) {
  const T b1 = T(s.beta1), b2 = T(s.beta2), eps = T(s.eps), wd = T(s.weight_decay);
  const T one_minus_b1 = T(1.0 - s.beta1), one_minus_b2 = T(1.0 - s.beta2);
  const T decay = T(1.0 - s.lr * s.weight_decay);
  const T step_size = T(s.lr / s.bias_correction1);
  const T bc2_sqrt = T(s.bias_correction2_sqrt);
  const bool decoupled = s.mode == WeightDecayMode::Decoupled;
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (decoupled) {
      param[i] *= decay;
    } else if (s.weight_decay != 0) {
      g += wd * param[i];
    }
    m[i] = m[i] * b1 + one_minus_b1 * g;
    v[i] = v[i] * b2 + one_minus_b2 * g * g;
    const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    param[i] -= step_size * (m[i] / denom);
  }
}

template <typename T>
double sum_of_squares(const T* x, int64_t n) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += double(x[i]) * double(x[i]);
  return total;
}

template <typename T>
void scale(T* x, int64_t n, double s) {
  const T f = T(s);
  for (int64_t i = 0; i < n; ++i) x[i] *= f;
}

template void sgd_step<float>(float*, const float*, float*, int64_t, const SgdScalars&);
template void sgd_step<double>(double*, const double*, double*, int64_t, const SgdScalars&);
template void adam_step<float>(float*, const float*, float*, float*, int64_t, const AdamScalars&);
template void adam_step<double>(double*, const double*, double*, double*, int64_t,
                                const AdamScalars&);
template double sum_of_squares<float>(const float*, int64_t);
template double sum_of_squares<double>(const double*, int64_t);
template void scale<float>(float*, int64_t, double);
template void scale<double>(double*, int64_t, double);

}  // namespace caption::kernels::cpu
