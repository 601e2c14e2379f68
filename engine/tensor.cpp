// Tensor creation, views, copies and the autograd entry points.
#include "engine/tensor.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <numeric>
#include <type_traits>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/op_node.h"
#include "engine/ops/elementwise.h"
#include "kernels/bf16.h"

namespace caption {

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  CAPTION_CHECK(a >= 0 && a < rank, what, ": axis ", axis, " is out of range for rank ", rank);
  return a;
}

// ---- Storage ----------------------------------------------------------------------

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes > 0) data_ = allocator_for(device).allocate(bytes);
}

Storage::~Storage() {
  if (data_ != nullptr) allocator_for(device_).deallocate(data_);
}

// ---- creation ---------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    CAPTION_CHECK(d >= 0, "tensor shape ", shape_string(shape), " has a negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <typename T>
Tensor Tensor::from_vector(std::span<const T> values, const Shape& shape) {
  CAPTION_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
                values.size(), " values do not fill shape ", shape_string(shape));
  Tensor t = empty(shape, dtype_of_v<T>);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size_bytes());
  return t;
}
template Tensor Tensor::from_vector<float>(std::span<const float>, const Shape&);
template Tensor Tensor::from_vector<double>(std::span<const double>, const Shape&);
template Tensor Tensor::from_vector<int32_t>(std::span<const int32_t>, const Shape&);
template Tensor Tensor::from_vector<int64_t>(std::span<const int64_t>, const Shape&);

// ---- properties -------------------------------------------------------------------

TensorImpl& Tensor::checked() const {
  CAPTION_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}
const Shape& Tensor::shape() const { return checked().shape; }
const Shape& Tensor::strides() const { return checked().strides; }
int64_t Tensor::size(int64_t d) const { return shape()[normalize_axis(d, dim(), "size")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
int64_t Tensor::offset() const { return checked().offset; }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked().storage; }

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked();
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  const char* name = "?";
  switch (dtype()) {
    case DType::F32: name = "float32"; break;
    case DType::F64: name = "float64"; break;
    case DType::I32: name = "int32"; break;
    case DType::I64: name = "int64"; break;
    case DType::BF16: name = "bfloat16"; break;  // was read past the end of a 4-name table
  }
  return str(name, shape_string(shape()), " on ", device().to_string());
}

void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  return static_cast<char*>(t.storage->data()) + t.offset * dtype_size(t.dtype);
}

// ---- views ------------------------------------------------------------------------

Tensor Tensor::make_view(const Shape& shape, const Shape& strides, int64_t offset) const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = checked().storage;
  impl->offset = offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::reshape(const Shape& new_shape_in) const {
  Shape new_shape = new_shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      CAPTION_CHECK(infer < 0, "reshape ", shape_string(shape()), " to ",
                    shape_string(new_shape_in), ": more than one -1");
      infer = static_cast<int64_t>(i);
    } else {
      CAPTION_CHECK(new_shape[i] >= 0, "reshape to ", shape_string(new_shape_in),
                    ": negative size");
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    CAPTION_CHECK(known > 0 && numel() % known == 0, "reshape ", shape_string(shape()),
                  " to ", shape_string(new_shape_in), ": sizes do not divide");
    new_shape[infer] = numel() / known;
  }
  CAPTION_CHECK(shape_numel(new_shape) == numel(), "reshape ", shape_string(shape()), " (",
                numel(), " elements) to ", shape_string(new_shape_in));
  Tensor base = contiguous();
  Tensor out = base.make_view(new_shape, contiguous_strides(new_shape), base.offset());
  const Shape old_shape = shape();
  record_lambda("reshape_backward", {base}, {out}, [old_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].contiguous().reshape(old_shape)};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = normalize_axis(d, dim(), "narrow");
  CAPTION_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow of ",
                describe(), ": [", start, ", ", start + length, ") is out of range on axis ", d);
  Shape s = shape();
  s[d] = length;
  Tensor out = make_view(s, strides(), offset() + start * strides()[d]);
  const TensorMeta in = meta_of(*this);
  record_lambda("narrow_backward", {*this}, {out}, [in, d, start, length](const std::vector<Tensor>& g) {
    Tensor gi = Tensor::zeros(in.shape, in.dtype, in.device);
    gi.narrow(d, start, length).copy_(g[0]);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = normalize_axis(d, dim(), "select");
  CAPTION_CHECK(index >= 0 && index < shape()[d], "select of ", describe(), ": index ", index,
                " is out of range on axis ", d);
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  CAPTION_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute of ", describe(),
                ": expected ", dim(), " axes");
  Shape s(dims.size()), st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t a = normalize_axis(dims[i], dim(), "permute");
    CAPTION_CHECK(inverse[a] < 0, "permute of ", describe(), ": axis ", a, " repeated");
    inverse[a] = static_cast<int64_t>(i);
    s[i] = shape()[a];
    st[i] = strides()[a];
  }
  Tensor out = make_view(s, st, offset());
  record_lambda("permute_backward", {*this}, {out}, [inverse](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].permute(inverse).contiguous()};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_axis(d0, dim(), "transpose")], dims[normalize_axis(d1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_axis(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_axis(d, dim(), "squeeze");
  CAPTION_CHECK(shape()[d] == 1, "squeeze of ", describe(), ": axis ", d, " has size ", shape()[d]);
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(s, st, offset());
  const Shape old_shape = shape();
  record_lambda("squeeze_backward", {*this}, {out}, [old_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].contiguous().reshape(old_shape)};
  });
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

// ---- copies -----------------------------------------------------------------------

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  record_lambda("clone_backward", {*this}, {out}, [](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0]};
  });
  return out;
}

void Tensor::copy_(const Tensor& src) {
  CAPTION_CHECK(src.shape() == shape(), "copy_: source ", src.describe(),
                " does not match destination ", describe());
  CAPTION_CHECK(src.dtype() == dtype(), "copy_: source ", src.describe(), " has another dtype than ",
                describe());
  if (numel() == 0) return;
  if (src.device() == device()) {
    if (src.is_contiguous() && is_contiguous()) {
      copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
    } else {
      strided_copy(*this, src);
    }
    return;
  }
  // Across devices: make both sides contiguous, then one transfer.
  Tensor s = src.is_contiguous() ? src : src.detach().clone();
  if (is_contiguous()) {
    copy_bytes(raw_data(), device(), s.raw_data(), s.device(), nbytes());
  } else {
    Tensor staging = empty(shape(), dtype(), device());
    copy_bytes(staging.raw_data(), device(), s.raw_data(), s.device(), nbytes());
    strided_copy(*this, staging);
  }
}

void Tensor::zero_() {
  if (numel() == 0) return;
  if (is_contiguous()) {
    zero_bytes(raw_data(), device(), nbytes());
  } else {
    copy_(zeros(shape(), dtype(), device()));
  }
}

void Tensor::fill_(double value) {
  if (numel() == 0) return;
  if (value == 0.0) return zero_();
  // fill_bytes writes 4- or 8-byte elements; bfloat16 (2 bytes) is filled on the host.
  if (is_contiguous() && dtype() != DType::BF16) {
    // The value's bit pattern in this dtype, written where the tensor lives: no copy from
    // the host, so a device graph can record it (constants of ops such as mul(x, 2.0)).
    uint64_t bits = 0;
    switch (dtype()) {
      case DType::F32: bits = std::bit_cast<uint32_t>(static_cast<float>(value)); break;
      case DType::F64: bits = std::bit_cast<uint64_t>(value); break;
      case DType::I32: bits = static_cast<uint32_t>(static_cast<int32_t>(value)); break;
      case DType::I64: bits = static_cast<uint64_t>(static_cast<int64_t>(value)); break;
      case DType::BF16: break;  // not taken (above)
    }
    fill_bytes(raw_data(), device(), numel(), static_cast<int>(dtype_size(dtype())), bits);
    return;
  }
  Tensor host = empty(shape(), dtype());
  const int64_t n = numel();
  switch (dtype()) {
    case DType::F32: std::fill_n(host.data<float>(), n, static_cast<float>(value)); break;
    case DType::F64: std::fill_n(host.data<double>(), n, value); break;
    case DType::I32: std::fill_n(host.data<int32_t>(), n, static_cast<int32_t>(value)); break;
    case DType::I64: std::fill_n(host.data<int64_t>(), n, static_cast<int64_t>(value)); break;
    case DType::BF16:
      std::fill_n(host.data<uint16_t>(), n, kernels::bf16_bits(static_cast<float>(value)));
      break;
  }
  copy_(host);
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = empty(shape(), dtype(), target);
  out.copy_(*this);
  const Device source = device();
  record_lambda("to_device_backward", {*this}, {out}, [source](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].to(source)};
  });
  return out;
}

namespace {
// bfloat16 travels as uint16_t bits: to and from it goes through float32 (rounded to
// nearest even on the way in, exact on the way out).
template <typename T>
float as_float(T v) {
  if constexpr (std::is_same_v<T, uint16_t>) return kernels::bf16_to_float(v);
  else return static_cast<float>(v);
}
template <typename From, typename To>
void convert(const From* src, To* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<To, uint16_t>) dst[i] = kernels::bf16_bits(as_float(src[i]));
    else if constexpr (std::is_same_v<From, uint16_t>) dst[i] = static_cast<To>(as_float(src[i]));
    else dst[i] = static_cast<To>(src[i]);
  }
}
template <typename From>
void convert_to(const From* src, Tensor& dst, int64_t n) {
  switch (dst.dtype()) {
    case DType::F32: convert(src, dst.data<float>(), n); break;
    case DType::F64: convert(src, dst.data<double>(), n); break;
    case DType::I32: convert(src, dst.data<int32_t>(), n); break;
    case DType::I64: convert(src, dst.data<int64_t>(), n); break;
    case DType::BF16: convert(src, dst.data<uint16_t>(), n); break;
  }
}
}  // namespace

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return detach();
  Tensor host = to(Device::cpu()).detach().contiguous();
  Tensor out = empty(shape(), target);
  const int64_t n = numel();
  switch (dtype()) {
    case DType::F32: convert_to(host.data<float>(), out, n); break;
    case DType::F64: convert_to(host.data<double>(), out, n); break;
    case DType::I32: convert_to(host.data<int32_t>(), out, n); break;
    case DType::I64: convert_to(host.data<int64_t>(), out, n); break;
    case DType::BF16: convert_to(host.data<uint16_t>(), out, n); break;
  }
  return out.to(device()).detach();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = detach().to(Device::cpu()).contiguous();
  if (host.dtype() != dtype_of_v<T>) host = host.to(dtype_of_v<T>);
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

std::vector<Tensor> Tensor::to_host(const std::vector<Tensor>& xs) {
  std::vector<Tensor> out(xs.size());
  std::vector<HostCopy> copies;
  Device device = Device::cpu();
  bool one_device = true;
  for (size_t i = 0; i < xs.size(); ++i) {
    CAPTION_CHECK(xs[i].defined(), "to_host: tensor ", i, " is undefined");
    if (xs[i].device().is_cpu()) {
      out[i] = xs[i].detach().contiguous();
      continue;
    }
    if (device.is_cpu()) device = xs[i].device();
    one_device = one_device && xs[i].device() == device;
  }
  if (!one_device) {  // several devices: one wait each
    for (size_t i = 0; i < xs.size(); ++i)
      if (!out[i].defined()) out[i] = xs[i].detach().to(Device::cpu()).contiguous();
    return out;
  }
  std::vector<Tensor> sources;  // kept alive until the copies are done
  for (size_t i = 0; i < xs.size(); ++i) {
    if (out[i].defined()) continue;
    sources.push_back(xs[i].detach().contiguous());
    out[i] = empty(xs[i].shape(), xs[i].dtype(), Device::cpu());
    copies.push_back({out[i].raw_data(), sources.back().raw_data(), out[i].nbytes()});
  }
  if (!copies.empty()) copy_many_to_host(copies, device);
  return out;
}

double Tensor::item() const {
  CAPTION_CHECK(numel() == 1, "item() of ", describe(), ": not a one-element tensor");
  return to_vector<double>()[0];
}

// ---- autograd ---------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked().requires_grad; }

Tensor& Tensor::set_requires_grad(bool enabled) {
  CAPTION_CHECK(is_leaf(), "set_requires_grad on ", describe(),
                ", which is the result of an op (only leaves can be parameters)");
  CAPTION_CHECK(!enabled || is_floating(dtype()), "set_requires_grad on ", describe(),
                ": only floating-point tensors have gradients");
  checked().requires_grad = enabled;
  return *this;
}

bool Tensor::is_leaf() const { return checked().grad_fn == nullptr; }
Tensor Tensor::grad() const { return checked().grad; }
void Tensor::set_grad(const Tensor& grad) const {
  CAPTION_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad: ", grad.describe(),
                " does not match ", describe());
  checked().grad = grad;
}
void Tensor::zero_grad() const { checked().grad = Tensor(); }

void Tensor::backward(const Tensor& grad, RetainGraph retain) const {
  run_backward({*this}, {grad}, retain);
}

Tensor Tensor::detach() const {
  return make_view(shape(), strides(), offset());
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked().grad_fn; }
int Tensor::output_nr() const { return checked().output_nr; }

void Tensor::set_history(std::shared_ptr<Node> fn, int output_nr) const {
  TensorImpl& t = checked();
  t.grad_fn = std::move(fn);
  t.output_nr = output_nr;
  t.requires_grad = t.grad_fn != nullptr;
}

std::shared_ptr<Node> Tensor::grad_accumulator() const {
  TensorImpl& t = checked();
  if (!t.grad_accumulator) t.grad_accumulator = std::make_shared<AccumulateGrad>(impl_);
  return t.grad_accumulator;
}

}  // namespace caption
