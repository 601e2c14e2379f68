// kernels/cpu/blas.h's Bf16Shadow on a GPU: under autocast, a product whose operand lies
// wholly inside a registered float32 range reads the registered bfloat16 copy (at the
// operand's offset) instead of converting the operand; an operand only partly inside, or
// any operand once the scope has closed, is converted as usual. The copies here hold
// the values of 2w, so reading them shows in the result. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "engine/backend.h"
#include "kernels/cpu/blas.h"
#include "tests/harness/gpu.h"
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

using kernels::cpu::Bf16Shadow;
using kernels::cpu::Bf16ShadowScope;

TEST(Bf16Shadow, AutocastProductReadsTheRegisteredCopy) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device d = Device::cuda(0), cpu = Device::cpu();
  Generator g(3);
  const Tensor x = random_tensor({5, 48}, g, DType::F32, d);
  const Tensor w = random_tensor({40, 48}, g, DType::F32, d, -0.3, 0.3);
  NoGradGuard ng;
  AutocastGuard autocast;
  const Tensor w2 = mul(w, 2.0);
  const Tensor plain = linear(x, w, Tensor()).to(cpu);
  const Tensor doubled = linear(x, w2, Tensor()).to(cpu);
  Tensor copy = Tensor::empty({(w.numel() + 1) / 2}, DType::F32, d);
  auto* copy16 = static_cast<uint16_t*>(copy.raw_data());
  cuda_bf16_copy(d.index, w2.data<float>(), w2.numel(), copy16);
  const std::vector<Bf16Shadow> whole{{w.data<float>(), w.numel(), copy16}};
  {
    const Bf16ShadowScope scope(&whole);
    // Products of the same bfloat16 values; cuBLAS may sum in another order for other
    // shapes, hence the float32-level tolerance rather than equality.
    EXPECT_TRUE(allclose(linear(x, w, Tensor()).to(cpu), doubled, {1e-5, 1e-5}, "whole weight"));
    // Rows 8..23 of w: read at their offset in the copy.
    EXPECT_TRUE(allclose(linear(x, w.narrow(0, 8, 16), Tensor()).to(cpu), doubled.narrow(1, 8, 16),
                         {1e-5, 1e-5}, "rows 8..23"));
  }
  EXPECT_TRUE(equal(linear(x, w, Tensor()).to(cpu), plain, "after the scope"));
  const std::vector<Bf16Shadow> half{{w.data<float>(), w.numel() / 2, copy16}};
  {
    const Bf16ShadowScope scope(&half);
    EXPECT_TRUE(equal(linear(x, w, Tensor()).to(cpu), plain, "operand partly inside a shadow"));
    EXPECT_TRUE(allclose(linear(x, w.narrow(0, 0, 20), Tensor()).to(cpu), doubled.narrow(1, 0, 20),
                         {1e-5, 1e-5}, "rows 0..19, inside the shadow"));
  }
  // Without autocast, products are float32 and shadows play no part.
  AutocastGuard off(false);
  const Bf16ShadowScope scope(&whole);
  const Tensor f32 = linear(x, w, Tensor()).to(cpu);
  EXPECT_TRUE(allclose(f32, linear(x.to(cpu), w.to(cpu), Tensor()), {1e-5, 1e-5}, "float32"));
}

}  // namespace
}  // namespace caption::testing
