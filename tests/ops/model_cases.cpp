// Harness cases of the captioning model's fused ops (LSTM cell, additive attention) and
// of the optimiser ops. The optimiser ops have no backward (gradcheck off): each case
// copies its inputs, runs one step on the copies and returns them, so the guard and
// CUDA-consistency modes still cover every updated element.
#include "tests/harness/harness.h"

namespace caption::testing {
namespace {

OpCase lstm_case(std::string name, int64_t B, int64_t I, int64_t H, std::vector<int> no_grad = {}) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::LstmCell;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{
        random_tensor({B, I}, g, t, d),     random_tensor({B, H}, g, t, d),
        random_tensor({B, H}, g, t, d),     random_tensor({4 * H, I}, g, t, d),
        random_tensor({4 * H, H}, g, t, d), random_tensor({4 * H}, g, t, d),
        random_tensor({4 * H}, g, t, d)};
  };
  c.forward = [](const std::vector<Tensor>& v) {
    LstmState s = lstm_cell(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    return std::vector<Tensor>{s.h, s.c};
  };
  c.no_grad_inputs = std::move(no_grad);
  return c;
}

OpCase lstm_gates_case(std::string name, int64_t B, int64_t H) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::LstmGates;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor({B, 4 * H}, g, t, d, -3.0, 3.0),
                               random_tensor({B, H}, g, t, d)};
  };
  c.forward = [](const std::vector<Tensor>& v) {
    LstmState s = lstm_gates(v[0], v[1]);
    return std::vector<Tensor>{s.h, s.c};
  };
  return c;
}

// The pre-activations in parts: the first a column block of a wider tensor (read in
// place), then `more` plain ones, summed by the op.
OpCase lstm_gates_parts_case(std::string name, int64_t B, int64_t H, int more,
                             std::vector<int> no_grad = {}) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::LstmGates;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor({B, 4 * H + 5}, g, t, d, -2.0, 2.0)};
    for (int k = 0; k < more; ++k) v.push_back(random_tensor({B, 4 * H}, g, t, d, -1.0, 1.0));
    v.push_back(random_tensor({B, H}, g, t, d));
    return v;
  };
  c.forward = [=](const std::vector<Tensor>& v) {
    std::vector<Tensor> parts{v[0].narrow(1, 2, 4 * H)};
    for (int k = 0; k < more; ++k) parts.push_back(v[1 + k]);
    LstmState s = lstm_gates(parts, v[1 + more]);
    return std::vector<Tensor>{s.h, s.c};
  };
  c.no_grad_inputs = std::move(no_grad);
  return c;
}

// Relu cases keep enc_proj + dec_proj at least 0.2 away from the kink: |enc| >= 0.3 and
// |dec| <= 0.1, so finite differences (eps 1e-6) never cross it.
OpCase attention_case(std::string name, int64_t B, int64_t P, int64_t A, int64_t D,
                      AttentionOptions::Activation act, std::vector<int> no_grad = {}) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::AdditiveAttention;
  const bool relu = act == AttentionOptions::Activation::Relu;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{
        random_tensor({B, P, A}, g, t, d, -1.0, 1.0, relu ? 0.3 : 0.0),
        relu ? random_tensor({B, A}, g, t, d, -0.1, 0.1) : random_tensor({B, A}, g, t, d),
        random_tensor({A}, g, t, d, -2.0, 2.0),  // scores spread enough to make alpha uneven
        random_tensor({1}, g, t, d), random_tensor({B, P, D}, g, t, d)};
  };
  c.forward = [act](const std::vector<Tensor>& v) {
    AttentionResult r = additive_attention(v[0], v[1], v[2], v[3], v[4], {act});
    return std::vector<Tensor>{r.context, r.alpha};
  };
  c.no_grad_inputs = std::move(no_grad);
  return c;
}

// The decoder's attention step. Inputs: enc_proj, h_out, w, bias, features[, sum][,
// scale]: h_out [B, A + D + 3] holds dec_proj and the gate as column blocks (read in
// place by the op, as the decoder's one product over h gives them) when `blocks`,
// otherwise h_out is dec_proj [B, A] and a separate gate [B, D] follows the features.
enum class Running { Off, FirstStep, Sum, SumScaled };
OpCase attention_step_case(std::string name, int64_t B, int64_t P, int64_t A, int64_t D,
                           AttentionOptions::Activation act, Running running, bool blocks,
                           std::vector<int> no_grad = {}) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::AttentionStep;
  const bool relu = act == AttentionOptions::Activation::Relu;
  const bool sum = running == Running::Sum || running == Running::SumScaled;
  const bool scaled = running == Running::FirstStep || running == Running::SumScaled;
  c.inputs = [=](Generator& g, DType t, Device d) {
    std::vector<Tensor> v{random_tensor({B, P, A}, g, t, d, -1.0, 1.0, relu ? 0.3 : 0.0)};
    const int64_t width = blocks ? A + D + 3 : A;
    v.push_back(relu ? random_tensor({B, width}, g, t, d, -0.1, 0.1)
                     : random_tensor({B, width}, g, t, d));
    v.push_back(random_tensor({A}, g, t, d, -2.0, 2.0));
    v.push_back(random_tensor({1}, g, t, d));
    v.push_back(random_tensor({B, P, D}, g, t, d));
    if (!blocks) v.push_back(random_tensor({B, D}, g, t, d, -3.0, 3.0));
    if (sum) v.push_back(random_tensor({B, P}, g, t, d));
    if (scaled) v.push_back(random_tensor({B, 1}, g, t, d, 0.0, 1.0));
    return v;
  };
  c.forward = [=](const std::vector<Tensor>& v) {
    size_t k = 5;
    Tensor dec = v[1], gate;
    if (blocks) {
      dec = v[1].narrow(1, 0, A);
      gate = v[1].narrow(1, A + 1, D);  // one column between the blocks, two after
    } else {
      gate = v[k++];
    }
    AttentionRunningSum r;
    r.enabled = running != Running::Off;
    if (sum) r.sum = v[k++];
    if (scaled) r.scale = v[k++];
    AttentionStepResult out = attention_step(v[0], dec, v[2], v[3], v[4], gate, r, {act});
    std::vector<Tensor> outs{out.z, out.alpha};
    if (r.enabled) outs.push_back(out.alpha_sum);
    return outs;
  };
  c.no_grad_inputs = std::move(no_grad);
  return c;
}

Tensor fresh_copy(const Tensor& t) { return t.defined() ? t.detach().clone() : t; }

OpCase sgd_case(std::string name, Shape s, SgdOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::SgdStep;
  c.gradcheck = false;
  const bool momentum = o.momentum != 0;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d), random_tensor(s, g, t, d),
                               momentum ? random_tensor(s, g, t, d) : Tensor()};
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    Tensor p = fresh_copy(v[0]), buf = fresh_copy(v[2]);
    sgd_step(p, v[1], buf, o);
    return buf.defined() ? std::vector<Tensor>{p, buf} : std::vector<Tensor>{p};
  };
  return c;
}

OpCase adam_case(std::string name, Shape s, AdamOptions o) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::AdamStep;
  c.gradcheck = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d), random_tensor(s, g, t, d),
                               random_tensor(s, g, t, d, -0.1, 0.1),
                               random_tensor(s, g, t, d, 0.0, 0.05)};  // v >= 0
  };
  c.forward = [o](const std::vector<Tensor>& v) {
    Tensor p = fresh_copy(v[0]), m = fresh_copy(v[2]), sq = fresh_copy(v[3]);
    adam_step(p, v[1], m, sq, o);
    return std::vector<Tensor>{p, m, sq};
  };
  return c;
}

// The updates with their per-step scalars in a float64 tensor on the device: options
// carry a decoy lr and step, which the tensor's values must override.
OpCase sgd_dynamic_case(std::string name, Shape s, SgdOptions o, double lr) {
  OpCase c = sgd_case(std::move(name), s, o);
  c.forward = [o, lr](const std::vector<Tensor>& v) {
    Tensor p = fresh_copy(v[0]), buf = fresh_copy(v[2]);
    SgdOptions decoy = o;
    decoy.lr = 123.0;
    sgd_step(p, v[1], buf, decoy, Tensor::from_vector<double>({lr}, {1}).to(v[0].device()));
    return buf.defined() ? std::vector<Tensor>{p, buf} : std::vector<Tensor>{p};
  };
  return c;
}

OpCase adam_dynamic_case(std::string name, Shape s, AdamOptions o) {
  OpCase c = adam_case(std::move(name), s, o);
  c.forward = [o](const std::vector<Tensor>& v) {
    Tensor p = fresh_copy(v[0]), m = fresh_copy(v[2]), sq = fresh_copy(v[3]);
    const std::array<double, 3> d = adam_dynamic_scalars(o);
    AdamOptions decoy = o;
    decoy.lr = 5.0;
    decoy.step = 1;
    adam_step(p, v[1], m, sq, decoy,
              Tensor::from_vector<double>({d[0], d[1], d[2]}, {3}).to(v[0].device()));
    return std::vector<Tensor>{p, m, sq};
  };
  return c;
}

// clip_coefficient over the sums of squares of the inputs (one run each).
OpCase clip_coefficient_case(std::string name, std::vector<Shape> shapes, double max_norm) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::ClipCoefficient;
  c.gradcheck = false;
  c.inputs = [shapes](Generator& g, DType t, Device d) {
    std::vector<Tensor> v;
    for (const Shape& s : shapes) v.push_back(random_tensor(s, g, t, d));
    return v;
  };
  c.forward = [max_norm](const std::vector<Tensor>& v) {
    std::vector<Tensor> sums;
    for (const Tensor& x : v) sums.push_back(sum_of_squares(x));
    return std::vector<Tensor>{clip_coefficient(sums, max_norm)};
  };
  return c;
}

OpCase sum_of_squares_case(std::string name, Shape s) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::SumOfSquares;
  c.gradcheck = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d)};
  };
  c.forward = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{sum_of_squares(v[0])};
  };
  return c;
}

// scale by a host factor, or (on_device) scale_by a float64 factor in a tensor.
OpCase scale_case(std::string name, Shape s, double factor, bool on_device = false) {
  OpCase c;
  c.name = std::move(name);
  c.op = OpId::Scale;
  c.gradcheck = false;
  c.inputs = [=](Generator& g, DType t, Device d) {
    return std::vector<Tensor>{random_tensor(s, g, t, d)};
  };
  c.forward = [factor, on_device](const std::vector<Tensor>& v) {
    Tensor x = fresh_copy(v[0]);
    if (on_device)
      scale_by(x, Tensor::from_vector<double>({factor}, {1}).to(x.device()));
    else
      scale(x, factor);
    return std::vector<Tensor>{x};
  };
  return c;
}

SgdOptions sgd(double momentum, double dampening, double wd, Nesterov n, int64_t step) {
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = momentum;
  o.dampening = dampening;
  o.weight_decay = wd;
  o.nesterov = n;
  o.step = step;
  return o;
}

AdamOptions adam(double wd, WeightDecayMode mode, int64_t step) {
  AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = wd;
  o.mode = mode;
  o.step = step;
  return o;
}

using Act = AttentionOptions::Activation;

CAPTION_OP_CASES {
  return std::vector<OpCase>{
      lstm_case("lstm_cell/batch1_odd", 1, 3, 5),
      lstm_case("lstm_cell/prime_sizes", 3, 7, 2),
      lstm_case("lstm_cell/hidden1_input1", 2, 1, 1),
      // Only the state and input need gradients: the weight paths are skipped.
      lstm_case("lstm_cell/no_weight_grads", 5, 4, 3, {3, 4, 5, 6}),
      lstm_gates_case("lstm_gates/batch1_odd", 1, 5),
      lstm_gates_case("lstm_gates/prime_sizes", 3, 7),
      lstm_gates_parts_case("lstm_gates/column_block_plus_one_part", 3, 5, 1),
      lstm_gates_parts_case("lstm_gates/three_parts", 2, 3, 2),
      lstm_gates_parts_case("lstm_gates/three_parts_middle_no_grad", 4, 2, 2, {1}),
      lstm_gates_parts_case("lstm_gates/one_row_column_block", 1, 4, 0),
      attention_case("additive_attention/tanh_odd", 2, 5, 3, 7, Act::Tanh),
      attention_case("additive_attention/tanh_one_position", 3, 1, 4, 2, Act::Tanh),
      attention_case("additive_attention/tanh_batch1_prime", 1, 13, 11, 5, Act::Tanh),
      attention_case("additive_attention/relu_away_from_kink", 2, 7, 5, 3, Act::Relu),
      attention_case("additive_attention/features_only", 3, 4, 2, 3, Act::Tanh, {0, 1, 2, 3}),
      attention_step_case("attention_step/tanh_odd", 2, 5, 3, 7, Act::Tanh, Running::Off, false),
      attention_step_case("attention_step/column_blocks_of_h", 3, 4, 5, 6, Act::Tanh,
                          Running::Off, true),
      attention_step_case("attention_step/first_step_of_a_masked_sum", 3, 5, 2, 4, Act::Tanh,
                          Running::FirstStep, true),
      attention_step_case("attention_step/running_sum", 2, 3, 4, 5, Act::Tanh, Running::Sum, false),
      attention_step_case("attention_step/masked_running_sum_relu", 2, 7, 5, 3, Act::Relu,
                          Running::SumScaled, true),
      // More positions than a block's tile (256) and more columns than a block (256).
      attention_step_case("attention_step/positions_beyond_one_tile", 2, 300, 2, 3, Act::Tanh,
                          Running::SumScaled, false),
      attention_step_case("attention_step/columns_beyond_one_block", 2, 3, 2, 300, Act::Tanh,
                          Running::Off, true),
      attention_step_case("attention_step/one_position", 3, 1, 4, 2, Act::Tanh, Running::Sum,
                          false),
      sgd_case("sgd_step/momentum_first_step", {37}, sgd(0.9, 0.1, 0.01, Nesterov::No, 1)),
      sgd_case("sgd_step/momentum_later_step", {3, 5}, sgd(0.9, 0.1, 0.01, Nesterov::No, 4)),
      sgd_case("sgd_step/nesterov", {2, 3, 7}, sgd(0.8, 0.0, 0.0, Nesterov::Yes, 2)),
      sgd_case("sgd_step/no_momentum", {1}, sgd(0.0, 0.0, 0.1, Nesterov::No, 1)),
      adam_case("adam_step/l2_first_step", {4, 7}, adam(0.1, WeightDecayMode::L2, 1)),
      adam_case("adam_step/adamw_step7", {31}, adam(0.01, WeightDecayMode::Decoupled, 7)),
      sum_of_squares_case("sum_of_squares/odd", {5, 3}),
      sum_of_squares_case("sum_of_squares/one", {1}),
      scale_case("scale/odd", {7, 3}, 0.37),
      sgd_dynamic_case("sgd_step/device_lr", {3, 5}, sgd(0.9, 0.1, 0.01, Nesterov::No, 4), 0.07),
      adam_dynamic_case("adam_step/adamw_device_scalars", {2, 9}, adam(0.01, WeightDecayMode::Decoupled, 5)),
      adam_dynamic_case("adam_step/l2_device_scalars", {13}, adam(0.1, WeightDecayMode::L2, 2)),
      scale_case("scale/device_factor", {5, 3}, 0.61, true),
      clip_coefficient_case("clip_coefficient/clips", {{6, 5}, {7}}, 0.5),
      clip_coefficient_case("clip_coefficient/below_threshold", {{4, 3}}, 1e6),
  };
}

}  // namespace
}  // namespace caption::testing
