// CUDA adapters and table registration of the indexing and shaping ops (embedding,
// dropout, concat, slice, index_select, gather): the same params, saved tensors and
// OpCall contract as engine/ops/indexing.cpp, arithmetic in kernels/cuda/indexing.cu.
//
// dtypes: arithmetic (embedding, dropout, every backward) is float32 only. The pure
// element moves (concat, slice, index_select and gather forward) also move float64,
// int32 and int64 tensors, as the CPU side does: beam search reorders token ids with them
// on the device, and clip_coefficient gathers the float64 sums of squares of its runs. The scatter-add backwards (embedding,
// index_select) take their sort workspace from the device's caching allocator.
#include "engine/cuda/adapter.h"
#include "engine/cuda/context.h"
#include "engine/dispatch.h"
#include "engine/op_table.h"
#include "engine/ops/indexing.h"
#include "kernels/cuda/indexing.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

// Element moves: float32, int32 or int64. Returns the element size.
int movable_elem_size(const Tensor& t, const char* op) {
  CAPTION_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::I32 ||
                    t.dtype() == DType::I64,
                op, ": the CUDA backend moves float32, float64, int32 and int64 tensors only, got ",
                t.describe());
  return static_cast<int>(dtype_size(t.dtype()));
}

// A device buffer of at least `bytes` bytes (freed when the tensor goes).
Tensor workspace(size_t bytes, Device dev) {
  const int64_t words = static_cast<int64_t>((bytes + 7) / 8);
  return Tensor::empty({words}, DType::I64, dev);
}

// Forward: in = {weight, ids}, out = {out}.
void embedding_cuda_forward(const OpCall& c) {
  const auto& p = c.get<EmbeddingParams>();
  require_f32(c.in[0], "embedding");
  dispatch_index(c.in[1].dtype(), "embedding", [&]<typename I>() {
    kcu::embedding_forward<I>(c.in[0].data<float>(), c.in[1].data<I>(), c.out[0].data<float>(),
                              p.count, p.dim, cuda::stream(c.in[0].device()));
  });
}

// Backward: in = {ids, grad_out}, out = {grad_weight, grad_ids (never defined)}.
void embedding_cuda_backward(const OpCall& c) {
  const auto& p = c.get<EmbeddingParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[1], "embedding backward");
  const Device dev = c.in[1].device();
  cudaStream_t stream = cuda::stream(dev);  // also makes dev current for the sort's query
  const size_t bytes = kcu::index_sort_workspace_bytes(p.count, p.vocab);
  Tensor ws = workspace(bytes, dev);
  dispatch_index(c.in[0].dtype(), "embedding backward", [&]<typename I>() {
    kcu::embedding_backward<I>(c.in[0].data<I>(), c.in[1].data<float>(), c.out[0].data<float>(),
                               p.count, p.vocab, p.dim, p.padding_idx, ws.raw_data(), bytes,
                               stream);
  });
}

// Forward: in = {x} or {x, counter}, out = {y}. The counter is read by the kernel.
void dropout_cuda_forward(const OpCall& c) {
  const auto& p = c.get<DropoutParams>();
  require_f32(c.in[0], "dropout");
  const int64_t* counter = p.counter ? c.in[1].data<int64_t>() : nullptr;
  kcu::dropout_apply(c.in[0].data<float>(), c.out[0].data<float>(), p.numel, p.p,
                     static_cast<float>(p.scale), p.seed, p.base, counter,
                     cuda::stream(c.in[0].device()));
}

// Backward: in = {grad_y} or {counter, grad_y}, out = {grad_x}: the same mask and scale
// applied to grad_y.
void dropout_cuda_backward(const OpCall& c) {
  const auto& p = c.get<DropoutParams>();
  if (!c.out[0].defined()) return;
  const Tensor& gy = c.in[p.counter ? 1 : 0];
  require_f32(gy, "dropout backward");
  const int64_t* counter = p.counter ? c.in[0].data<int64_t>() : nullptr;
  kcu::dropout_apply(gy.data<float>(), c.out[0].data<float>(), p.numel, p.p,
                     static_cast<float>(p.scale), p.seed, p.base, counter, cuda::stream(gy.device()));
}

int64_t total_of(const ConcatParams& p) {
  int64_t total = 0;
  for (int64_t s : p.sizes) total += s;
  return total;
}

// The parts' addresses (null where not wanted), lengths and offsets along the axis.
struct ConcatLayout {
  std::vector<void*> parts;
  std::vector<int64_t> len, offset;
};
template <typename PartOf>
ConcatLayout concat_layout(const ConcatParams& p, PartOf part_of) {
  ConcatLayout l;
  int64_t offset = 0;
  for (size_t k = 0; k < p.sizes.size(); ++k) {
    l.parts.push_back(part_of(k));
    l.len.push_back(p.sizes[k]);
    l.offset.push_back(offset);
    offset += p.sizes[k];
  }
  return l;
}

// Forward: in = the tensors, out = {out}: one copy kernel per 16 inputs.
void concat_cuda_forward(const OpCall& c) {
  const auto& p = c.get<ConcatParams>();
  const Tensor& out = c.out[0];
  const int elem = movable_elem_size(out, "concat");
  const ConcatLayout l = concat_layout(p, [&](size_t k) { return c.in[k].raw_data(); });
  kcu::concat_copy_parts(kcu::ConcatCopy::IntoWhole, l.parts.data(), l.len.data(),
                         l.offset.data(), static_cast<int>(l.parts.size()), out.raw_data(),
                         p.outer, total_of(p), p.inner, elem, cuda::stream(out.device()));
}

// Backward: in = {grad_out}, out = one gradient per input (undefined: not needed).
void concat_cuda_backward(const OpCall& c) {
  const auto& p = c.get<ConcatParams>();
  const Tensor& g = c.in[0];
  require_f32(g, "concat backward");
  const ConcatLayout l = concat_layout(p, [&](size_t k) -> void* {
    return k < c.out.size() && c.out[k].defined() ? c.out[k].raw_data() : nullptr;
  });
  kcu::concat_copy_parts(kcu::ConcatCopy::FromWhole, l.parts.data(), l.len.data(),
                         l.offset.data(), static_cast<int>(l.parts.size()), g.raw_data(), p.outer,
                         total_of(p), p.inner, 4, cuda::stream(g.device()));
}

// Forward: in = {x}, out = {y}.
void slice_cuda_forward(const OpCall& c) {
  const auto& p = c.get<SliceParams>();
  const int elem = movable_elem_size(c.in[0], "slice");
  kcu::slice_forward(c.in[0].raw_data(), c.out[0].raw_data(), p.outer, p.in_len, p.out_len, p.inner,
                     p.start, p.step, elem, cuda::stream(c.in[0].device()));
}

// Backward: in = {grad_y}, out = {grad_x}.
void slice_cuda_backward(const OpCall& c) {
  const auto& p = c.get<SliceParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[0], "slice backward");
  kcu::slice_backward(c.in[0].data<float>(), c.out[0].data<float>(), p.outer, p.in_len, p.out_len,
                      p.inner, p.start, p.step, cuda::stream(c.in[0].device()));
}

// Forward: in = {x, index}, out = {y}.
void index_select_cuda_forward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  const int elem = movable_elem_size(c.in[0], "index_select");
  dispatch_index(c.in[1].dtype(), "index_select", [&]<typename I>() {
    kcu::index_select_forward<I>(c.in[0].raw_data(), c.in[1].data<I>(), c.out[0].raw_data(),
                                 p.outer, p.in_len, p.count, p.inner, elem,
                                 cuda::stream(c.in[0].device()));
  });
}

// Backward: in = {index, grad_y}, out = {grad_x, grad_index (never defined)}.
void index_select_cuda_backward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[1], "index_select backward");
  const Device dev = c.in[1].device();
  cudaStream_t stream = cuda::stream(dev);  // also makes dev current for the sort's query
  const size_t bytes = kcu::index_sort_workspace_bytes(p.count, p.in_len);
  Tensor ws = workspace(bytes, dev);
  dispatch_index(c.in[0].dtype(), "index_select backward", [&]<typename I>() {
    kcu::index_select_backward<I>(c.in[0].data<I>(), c.in[1].data<float>(), c.out[0].data<float>(),
                                  p.outer, p.in_len, p.count, p.inner, ws.raw_data(), bytes,
                                  stream);
  });
}

// Forward: in = {x, index}, out = {y}.
void gather_cuda_forward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  const int elem = movable_elem_size(c.in[0], "gather");
  dispatch_index(c.in[1].dtype(), "gather", [&]<typename I>() {
    kcu::gather_forward<I>(c.in[0].raw_data(), c.in[1].data<I>(), c.out[0].raw_data(), p.outer,
                           p.in_len, p.count, p.inner, elem, cuda::stream(c.in[0].device()));
  });
}

// Backward: in = {index, grad_y}, out = {grad_x, grad_index (never defined)}.
void gather_cuda_backward(const OpCall& c) {
  const auto& p = c.get<IndexParams>();
  if (!c.out[0].defined()) return;
  require_f32(c.in[1], "gather backward");
  dispatch_index(c.in[0].dtype(), "gather backward", [&]<typename I>() {
    kcu::gather_backward<I>(c.in[0].data<I>(), c.in[1].data<float>(), c.out[0].data<float>(),
                            p.outer, p.in_len, p.count, p.inner, cuda::stream(c.in[1].device()));
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Embedding, DeviceType::CUDA, embedding_cuda_forward,
                   embedding_cuda_backward);
  register_kernels(OpId::Dropout, DeviceType::CUDA, dropout_cuda_forward, dropout_cuda_backward);
  register_kernels(OpId::Concat, DeviceType::CUDA, concat_cuda_forward, concat_cuda_backward);
  register_kernels(OpId::Slice, DeviceType::CUDA, slice_cuda_forward, slice_cuda_backward);
  register_kernels(OpId::IndexSelect, DeviceType::CUDA, index_select_cuda_forward,
                   index_select_cuda_backward);
  register_kernels(OpId::Gather, DeviceType::CUDA, gather_cuda_forward, gather_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
