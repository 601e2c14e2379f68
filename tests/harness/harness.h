// The one harness for every op (ENGINEERING.md, "Correctness" 3).
//
// An OpCase describes one op call with awkward shapes: how to draw its inputs from a
// seeded generator (in a given dtype, on a given device) and how to run it through the
// tensor-level API. The same case then runs in every mode:
//   - gradient check (tests/ops/gradcheck_test.cpp): float64 on the CPU, central
//     differences against autograd, with a random upstream gradient per output
//     (loss = sum(out * dout)), never a plain sum;
//   - consistency (tests/ops/consistency_test.cpp): float32 on CUDA against the CPU,
//     every output and every gradient;
//   - guard (tests/ops/guard_test.cpp): allocator guard mode, outputs poisoned with NaN
//     before the kernels run; every element must be written and no guard region hit.
// Cases register themselves from tests/ops/*_cases.cpp with CAPTION_OP_CASES.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace caption::testing {

// |got - ref| <= atol + rtol * |ref| per element.
struct Tolerance {
  double atol = 1e-5;
  double rtol = 1e-4;
};

::testing::AssertionResult allclose(const Tensor& got, const Tensor& ref, Tolerance tol,
                                    const std::string& what);
// Exact equality of shape, dtype and every value.
::testing::AssertionResult equal(const Tensor& got, const Tensor& ref, const std::string& what);
// Plain vectors of floats (a caption's log-probabilities, its attention rows): equal
// sizes and |got - ref| <= atol per element; the message names the first difference.
::testing::AssertionResult near(const std::vector<float>& got, const std::vector<float>& ref,
                                double atol, const std::string& what);
::testing::AssertionResult near(const std::vector<std::vector<float>>& got,
                                const std::vector<std::vector<float>>& ref, double atol,
                                const std::string& what);

// Uniform values in [low, high). With `min_abs` > 0 values are pushed away from zero
// (|x| >= min_abs), for ops with a kink at 0 such as relu.
Tensor random_tensor(const Shape& shape, Generator& gen, DType dtype, Device device,
                     double low = -1.0, double high = 1.0, double min_abs = 0.0);
// Integer ids in [0, high).
Tensor random_ids(const Shape& shape, Generator& gen, int64_t high, DType dtype = DType::I64,
                  Device device = Device::cpu());

using ForwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
using InputsFn = std::function<std::vector<Tensor>(Generator&, DType, Device)>;

struct GradcheckOptions {
  double eps = 1e-6;
  Tolerance tol{1e-7, 1e-5};
};

struct OpCase {
  std::string name;  // "<op>/<what is awkward about it>"
  OpId op;
  InputsFn inputs;   // floating inputs are differentiated unless listed in no_grad
  ForwardFn forward;
  std::vector<int> no_grad_inputs;  // indices of floating inputs not to differentiate
  Tolerance consistency{1e-5, 1e-4};  // CUDA float32 vs CPU float32
  GradcheckOptions grad;
  bool gradcheck = true;  // false only for ops without backward
  // false: the op has no float64 kernels (the bfloat16 NHWC ops): no finite-difference
  // check; its gradients run in the consistency and guard modes (float32 inputs), and value
  // tests compare them with the float32 ops'.
  bool float64 = true;
};

std::vector<OpCase>& op_cases();
bool add_op_cases(std::vector<OpCase> cases);

// Finite-difference check of every differentiable input of `c`, float64 on the CPU.
::testing::AssertionResult gradcheck(const OpCase& c, uint64_t seed);

// Runs `c` on `device` in `dtype`: outputs and the gradients of the differentiable
// inputs for upstream gradients drawn from `seed` (the same on every device).
struct CaseRun {
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  std::vector<Tensor> grads;  // one per input, undefined where not differentiated
};
CaseRun run_case(const OpCase& c, uint64_t seed, DType dtype, Device device);

}  // namespace caption::testing

#define CAPTION_CONCAT_INNER(a, b) a##b
#define CAPTION_CONCAT(a, b) CAPTION_CONCAT_INNER(a, b)
// CAPTION_OP_CASES { return std::vector<OpCase>{...}; }
#define CAPTION_OP_CASES                                                                    \
  static std::vector<::caption::testing::OpCase> CAPTION_CONCAT(caption_cases_, __LINE__)(); \
  [[maybe_unused]] static const bool CAPTION_CONCAT(caption_cases_registered_, __LINE__) =   \
      ::caption::testing::add_op_cases(CAPTION_CONCAT(caption_cases_, __LINE__)());          \
  static std::vector<::caption::testing::OpCase> CAPTION_CONCAT(caption_cases_, __LINE__)()
