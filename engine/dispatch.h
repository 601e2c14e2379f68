// Helpers for CPU op adapters: calling a kernel template with the tensor's element type.
#pragma once

#include "engine/error.h"
#include "engine/tensor.h"

namespace caption {

// Calls f.template operator()<T>() with T = float or double per `dtype`.
template <typename F>
decltype(auto) dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: return f.template operator()<float>();
    case DType::F64: return f.template operator()<double>();
    default: break;
  }
  throw Error(str(op, ": expected a float32 or float64 tensor, got ", dtype_name(dtype)));
}

// Calls f.template operator()<I>() with I = int32_t or int64_t per `dtype` (token ids,
// targets, indices).
template <typename F>
decltype(auto) dispatch_index(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::I32: return f.template operator()<int32_t>();
    case DType::I64: return f.template operator()<int64_t>();
    default: break;
  }
  throw Error(str(op, ": expected an int32 or int64 index tensor, got ", dtype_name(dtype)));
}

// Pointer of an optional tensor (nullptr when undefined).
template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace caption
