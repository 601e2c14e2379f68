// Element types. float32 is the working type everywhere; float64 exists on the CPU for
// finite-difference gradient checks; int32/int64 carry token ids and lengths. bfloat16
// is a storage type only: the NHWC inference ops (engine/ops/nhwc.h) keep activations in
// it between convolutions; every other op refuses it (is_floating is false for it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace caption {

enum class DType : uint8_t { F32, F64, I32, I64, BF16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::BF16: return 2;
  }
  return 0;
}

// The names safetensors uses ("F32", "F64", "I32", "I64", "BF16").
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::BF16: return "BF16";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
// bfloat16 elements are read and written as their bit patterns (kernels/bf16.h converts).
template <> struct dtype_of<uint16_t> { static constexpr DType value = DType::BF16; };
template <typename T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace caption
