// The op harness: comparison with readable failures, random inputs, the case registry,
// the finite-difference gradient check, and running a case on a device.
#include "tests/harness/harness.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace caption::testing {

namespace {
std::string index_string(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    const int64_t s = std::max<int64_t>(shape[i], 1);
    idx[i] = flat % s;
    flat /= s;
  }
  return shape_string(idx);
}
}  // namespace

::testing::AssertionResult allclose(const Tensor& got, const Tensor& ref, Tolerance tol,
                                    const std::string& what) {
  if (!got.defined() || !ref.defined()) {
    if (got.defined() == ref.defined()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": one side undefined (got " << got.describe()
                                         << ", ref " << ref.describe() << ")";
  }
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_string(got.shape())
                                         << " vs reference " << shape_string(ref.shape());
  const std::vector<double> g = got.to_vector<double>(), r = ref.to_vector<double>();
  double max_abs = 0, max_rel = 0;
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - r[i]);
    const bool ok = std::isfinite(g[i]) == std::isfinite(r[i]) &&
                    (!std::isfinite(r[i]) ? (g[i] == r[i] || (std::isnan(g[i]) && std::isnan(r[i])))
                                          : err <= tol.atol + tol.rtol * std::abs(r[i]));
    if (std::isfinite(err)) {
      max_abs = std::max(max_abs, err);
      if (r[i] != 0) max_rel = std::max(max_rel, err / std::abs(r[i]));
    }
    if (!ok) {
      if (bad < 8)
        first << "\n    at " << index_string(static_cast<int64_t>(i), got.shape()) << ": got "
              << g[i] << "  ref " << r[i] << "  |diff| " << err;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << g.size() << " elements differ (atol " << tol.atol
         << ", rtol " << tol.rtol << "); max abs error " << max_abs << ", max rel error "
         << max_rel << first.str();
}

::testing::AssertionResult equal(const Tensor& got, const Tensor& ref, const std::string& what) {
  if (got.dtype() != ref.dtype())
    return ::testing::AssertionFailure() << what << ": dtype " << dtype_name(got.dtype()) << " vs "
                                         << dtype_name(ref.dtype());
  return allclose(got, ref, {0.0, 0.0}, what);
}

::testing::AssertionResult near(const std::vector<float>& got, const std::vector<float>& ref,
                                double atol, const std::string& what) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values vs " << ref.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(double{got[i]} - ref[i]) <= atol))
      return ::testing::AssertionFailure() << what << "[" << i << "]: " << got[i] << " vs " << ref[i]
                                           << " (atol " << atol << ")";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult near(const std::vector<std::vector<float>>& got,
                                const std::vector<std::vector<float>>& ref, double atol,
                                const std::string& what) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " rows vs " << ref.size();
  for (size_t i = 0; i < got.size(); ++i) {
    ::testing::AssertionResult r = near(got[i], ref[i], atol, str(what, "[", i, "]"));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

Tensor random_tensor(const Shape& shape, Generator& gen, DType dtype, Device device, double low,
                     double high, double min_abs) {
  Tensor host = Tensor::empty(shape, DType::F64);
  double* p = host.data<double>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    double v = low + (high - low) * gen.uniform();
    if (min_abs > 0 && std::abs(v) < min_abs) v = v < 0 ? v - min_abs : v + min_abs;
    p[i] = v;
  }
  return host.to(dtype).to(device);
}

Tensor random_ids(const Shape& shape, Generator& gen, int64_t high, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, DType::I64);
  int64_t* p = host.data<int64_t>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = static_cast<int64_t>(gen.next_u32() % high);
  return host.to(dtype).to(device);
}

std::vector<OpCase>& op_cases() {
  static std::vector<OpCase> cases;
  return cases;
}

bool add_op_cases(std::vector<OpCase> cases) {
  for (auto& c : cases) op_cases().push_back(std::move(c));
  return true;
}

namespace {

bool differentiated(const OpCase& c, const std::vector<Tensor>& inputs, size_t i) {
  if (!inputs[i].defined() || !is_floating(inputs[i].dtype())) return false;
  return std::find(c.no_grad_inputs.begin(), c.no_grad_inputs.end(), static_cast<int>(i)) ==
         c.no_grad_inputs.end();
}

// Upstream gradients for the floating outputs, drawn from their own stream so that they
// do not depend on the inputs' draws.
std::vector<Tensor> upstream(const std::vector<Tensor>& outputs, uint64_t seed, DType dtype,
                             Device device) {
  Generator gen(seed ^ 0x5eed5eedULL);
  std::vector<Tensor> d;
  for (const Tensor& o : outputs) {
    if (o.defined() && is_floating(o.dtype()))
      d.push_back(random_tensor(o.shape(), gen, dtype, device, -1.0, 1.0));
    else
      d.push_back(Tensor());
  }
  return d;
}

double weighted_sum(const std::vector<Tensor>& outputs, const std::vector<Tensor>& douts) {
  double total = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!douts[i].defined()) continue;
    const std::vector<double> o = outputs[i].to_vector<double>(), d = douts[i].to_vector<double>();
    for (size_t j = 0; j < o.size(); ++j) total += o[j] * d[j];
  }
  return total;
}

}  // namespace

CaseRun run_case(const OpCase& c, uint64_t seed, DType dtype, Device device) {
  Generator gen(seed);
  CaseRun run;
  run.inputs = c.inputs(gen, dtype, device);
  for (size_t i = 0; i < run.inputs.size(); ++i)
    if (differentiated(c, run.inputs, i)) run.inputs[i].set_requires_grad(true);
  run.outputs = c.forward(run.inputs);
  if (!c.gradcheck) return run;
  std::vector<Tensor> douts = upstream(run.outputs, seed, dtype, device);
  std::vector<Tensor> roots, seeds;
  for (size_t i = 0; i < run.outputs.size(); ++i)
    if (douts[i].defined() && run.outputs[i].requires_grad()) {
      roots.push_back(run.outputs[i]);
      seeds.push_back(douts[i]);
    }
  if (!roots.empty()) run_backward(roots, seeds, Tensor::RetainGraph::No);
  run.grads.resize(run.inputs.size());
  for (size_t i = 0; i < run.inputs.size(); ++i)
    if (differentiated(c, run.inputs, i)) {
      run.grads[i] = run.inputs[i].grad();
      // An input that no output depends on has a zero gradient.
      if (!run.grads[i].defined())
        run.grads[i] = Tensor::zeros(run.inputs[i].shape(), dtype, device);
    }
  return run;
}

::testing::AssertionResult gradcheck(const OpCase& c, uint64_t seed) {
  CaseRun run = run_case(c, seed, DType::F64, Device::cpu());
  const std::vector<Tensor> douts = upstream(run.outputs, seed, DType::F64, Device::cpu());
  NoGradGuard no_grad;
  // Fresh inputs without autograd state for the perturbed forward passes.
  std::vector<Tensor> x;
  for (const Tensor& t : run.inputs) x.push_back(t.defined() ? t.detach().clone() : t);
  for (size_t k = 0; k < x.size(); ++k) {
    if (!run.grads[k].defined()) continue;
    Tensor numeric = Tensor::empty(x[k].shape(), DType::F64);
    double* xp = x[k].data<double>();
    double* np = numeric.data<double>();
    for (int64_t j = 0; j < x[k].numel(); ++j) {
      const double saved = xp[j];
      xp[j] = saved + c.grad.eps;
      const double plus = weighted_sum(c.forward(x), douts);
      xp[j] = saved - c.grad.eps;
      const double minus = weighted_sum(c.forward(x), douts);
      xp[j] = saved;
      np[j] = (plus - minus) / (2 * c.grad.eps);
    }
    auto result = allclose(run.grads[k], numeric, c.grad.tol,
                           str(c.name, ": gradient of input ", k, " (analytic vs numeric)"));
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace caption::testing
