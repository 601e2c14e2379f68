// Host draws from the Philox stream.
#include "engine/random.h"

#include <cmath>

#include "engine/error.h"
#include "kernels/philox.h"

namespace caption {

void Generator::attach_device_counter(const Tensor& counter) {
  CAPTION_CHECK(counter.defined() && counter.dtype() == DType::I64 && counter.numel() == 1 &&
                    counter.is_contiguous(),
                "generator: a device counter must be one int64, got ",
                counter.defined() ? counter.describe() : std::string("nothing"));
  counter_ = counter;
  counter_origin_ = offset_;
}

void Generator::detach_device_counter() {
  counter_ = Tensor();
  counter_origin_ = 0;
}

uint32_t Generator::next_u32() {
  return kernels::philox_word(seed_, reserve(1), 0);
}

float Generator::uniform() { return kernels::word_to_unit_float(next_u32()); }

namespace {
// A standard normal from one Philox block: 53-bit uniforms from two words each, u1 in
// (0, 1] so that the logarithm is finite.
double box_muller(const kernels::Philox4& w) {
  const double u1 = ((static_cast<uint64_t>(w.v[0]) << 21 ^ w.v[1] >> 11) + 1.0) / 9007199254740992.0;
  const double u2 = (static_cast<uint64_t>(w.v[2]) << 21 ^ w.v[3] >> 11) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}
}  // namespace

double Generator::normal() { return box_muller(kernels::philox4x32_10(reserve(4), seed_)); }

namespace {
// Bulk draws take one stream for the whole tensor: element i of a uniform tensor is word
// i of the stream; element i of a normal tensor uses the four words of counter base + i.
Tensor finish(Tensor host, DType dtype, Device device) { return host.to(dtype).to(device); }
}  // namespace

Tensor rand_uniform(const Shape& shape, double low, double high, Generator& gen, DType dtype,
                    Device device) {
  Tensor host = Tensor::empty(shape, DType::F64);
  double* p = host.data<double>();
  const int64_t n = host.numel();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n));
  for (int64_t i = 0; i < n; ++i)
    p[i] = low + (high - low) * kernels::word_to_unit_float(kernels::philox_word(gen.seed(), base, i));
  return finish(host, dtype, device);
}

Tensor rand_normal(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype,
                   Device device) {
  Tensor host = Tensor::empty(shape, DType::F64);
  double* p = host.data<double>();
  const int64_t n = host.numel();
  const uint64_t base = gen.reserve(4 * static_cast<uint64_t>(n));
  for (int64_t i = 0; i < n; ++i)
    p[i] = mean + stddev * box_muller(kernels::philox4x32_10(base + i, gen.seed()));
  return finish(host, dtype, device);
}

}  // namespace caption
