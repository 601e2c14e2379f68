// Tensor: a strided view of reference-counted storage on one device, with the autograd
// state that reverse-mode differentiation needs.
//
// Tensors have reference semantics, as in PyTorch: copying a Tensor copies a handle,
// and views (reshape of contiguous data, narrow, transpose, permute, select) share the
// storage of their base. Compute ops take any layout and return new contiguous tensors;
// kernels see only contiguous buffers (the op layer calls contiguous() for them).
//
// Autograd state lives in the TensorImpl: requires_grad, the accumulated grad of a
// leaf, and, for results of recorded ops, the node that made them (grad_fn) and which
// of its outputs this is. See engine/autograd.h.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"

namespace caption {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

// Raw memory of one device, returned to its allocator when the last view goes away.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (defined() is false)

  // ---- creation (contiguous, float32 on the CPU unless told) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu()) {
    return full(shape, 1.0, dtype, device);
  }
  // Copies host values into a new CPU tensor of the given shape.
  template <typename T>
  static Tensor from_vector(std::span<const T> values, const Shape& shape);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    return from_vector(std::span<const T>(values), shape);
  }
  static Tensor scalar(double value, DType dtype = DType::F32) { return full({}, value, dtype); }

  // ---- properties ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  int64_t offset() const;  // in elements, into the storage
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const;
  std::string describe() const;  // "float32[2, 3] on cpu"

  // Pointer to the first element (storage + offset). data<T>() checks the dtype.
  void* raw_data() const;
  template <typename T>
  T* data() const {
    CAPTION_ASSERT(dtype() == dtype_of_v<T>, "data<", dtype_name(dtype_of_v<T>), ">() of a ",
                   dtype_name(dtype()), " tensor");
    return static_cast<T*>(raw_data());
  }

  // ---- views (share storage; differentiable) ----
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy; one -1 allowed
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor contiguous() const;  // this tensor if already contiguous, else a copy

  // ---- copies ----
  Tensor to(Device device) const;  // differentiable
  Tensor to(DType dtype) const;    // not differentiable (use for inputs)
  Tensor clone() const;            // contiguous copy, differentiable
  // Copies src's values into this tensor's elements (same shape; any devices and
  // layouts; dtypes must match). Not recorded by autograd.
  void copy_(const Tensor& src);
  void zero_();
  void fill_(double value);

  // Host values in logical (row-major) order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;
  // The tensors' values on the host (contiguous, detached; host tensors as they are):
  // those on one CUDA device come back with one wait for it (engine/backend.h:
  // copy_many_to_host), where reading them one by one waits once each.
  static std::vector<Tensor> to_host(const std::vector<Tensor>& xs);
  double item() const;  // the value of a one-element tensor

  // ---- autograd ----
  bool requires_grad() const;
  // Marks a leaf as a parameter (or not). Refused on non-leaves.
  Tensor& set_requires_grad(bool enabled);
  bool is_leaf() const;
  Tensor grad() const;  // the accumulated gradient of a leaf (undefined if none yet)
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient
  // Backpropagates from this tensor. Without an argument it must hold one element and
  // the seed gradient is 1. RetainGraph::Yes keeps the saved tensors for a second pass.
  enum class RetainGraph { No, Yes };
  void backward(const Tensor& grad = Tensor(), RetainGraph retain = RetainGraph::No) const;
  // A tensor sharing this one's storage with no autograd history.
  Tensor detach() const;
  const std::shared_ptr<Node>& grad_fn() const;
  int output_nr() const;
  void set_history(std::shared_ptr<Node> fn, int output_nr) const;  // for the op layer
  // The AccumulateGrad node of a leaf (created on first use; the leaf owns it and it
  // refers back to the leaf weakly, so there is no cycle).
  std::shared_ptr<Node> grad_accumulator() const;

  // Identity of the underlying TensorImpl (for autograd bookkeeping and tests).
  const TensorImpl* impl() const { return impl_.get(); }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  TensorImpl& checked() const;
  Tensor make_view(const Shape& shape, const Shape& strides, int64_t offset) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape;
  Shape strides;
  DType dtype = DType::F32;
  bool requires_grad = false;
  Tensor grad;                    // leaves only
  std::shared_ptr<Node> grad_fn;  // results of recorded ops
  int output_nr = 0;
  std::shared_ptr<Node> grad_accumulator;  // leaves requiring grad, created on demand
};

// Normalises a possibly negative axis against a rank; the message names `what`.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what);

}  // namespace caption
