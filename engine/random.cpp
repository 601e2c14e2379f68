// Host draws from the Philox stream.
#include "engine/random.h"

#include <cmath>

#include "kernels/philox.h"

namespace caption {

uint32_t Generator::next_u32() {
  return kernels::philox_word(seed_, reserve(1), 0);
}

float Generator::uniform() { return kernels::word_to_unit_float(next_u32()); }

double Generator::normal() {
  const uint64_t start = reserve(4);
  const kernels::Philox4 w = kernels::philox4x32_10(start, seed_);
  // 53-bit uniforms from two words each; u1 in (0, 1] so that log is finite.
  const double u1 = ((static_cast<uint64_t>(w.v[0]) << 21 ^ w.v[1] >> 11) + 1.0) / 9007199254740992.0;
  const double u2 = (static_cast<uint64_t>(w.v[2]) << 21 ^ w.v[3] >> 11) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

namespace {
template <typename F>
Tensor fill_random(const Shape& shape, DType dtype, Device device, F&& draw) {
  Tensor host = Tensor::empty(shape, DType::F64);
  double* p = host.data<double>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = draw();
  return host.to(dtype).to(device);
}
}  // namespace

Tensor rand_uniform(const Shape& shape, double low, double high, Generator& gen, DType dtype,
                    Device device) {
  return fill_random(shape, dtype, device,
                     [&] { return low + (high - low) * static_cast<double>(gen.uniform()); });
}

Tensor rand_normal(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype,
                   Device device) {
  return fill_random(shape, dtype, device, [&] { return mean + stddev * gen.normal(); });
}

}  // namespace caption
