// Reading and writing safetensors checkpoints (MODEL_SPEC section 7): an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON, then the raw tensor bytes.
//
// Choices:
// - The reader validates the whole file up front with the rules of the reference
//   implementation (the Rust `safetensors` crate that the Python package wraps): header
//   at most 100 MB, a JSON object starting with '{', "__metadata__" string -> string,
//   tensors contiguous in offset order and covering the data section exactly, byte counts
//   matching shape x dtype. On top of that it refuses duplicate JSON keys and any dtype
//   other than F32/F64/I32/I64 (known safetensors dtypes such as BF16 get "unsupported
//   dtype", anything else "unknown dtype"). Every error is a caption::Error whose
//   message starts with the file (or the label of a memory buffer) and names the problem.
// - After validation the reader gives zero-copy access: the file is mmapped read-only
//   (falling back to reading it into memory when mmap fails). data() is raw bytes, as the
//   data section need not be aligned for the element type in files written elsewhere;
//   files from write_safetensors are (see below). Truncating a mapped file while a
//   reader holds it is undefined (SIGBUS), as with any mmap.
// - The writer lays out the file as the reference library serialises: "__metadata__"
//   first (keys sorted; omitted when empty), tensors sorted by dtype alignment descending
//   then name bytewise (I64, F64, F32, I32 — the reference's dtype order), data packed in
//   that order, header compact JSON padded with spaces to a multiple of 8 bytes. So the
//   data section starts 8-aligned and every tensor is aligned for its dtype. It writes a
//   temporary file in the target's directory and renames it over the target: a failure
//   leaves neither a partial target nor the temporary file.
// - Independent of any Tensor class: tensors are described by dtype, shape and bytes.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dtype.h"

namespace caption {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

// The reference library's cap on the JSON header size (bytes).
inline constexpr uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

// One tensor of a checkpoint. begin/end are byte offsets into the data section.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // empty: a scalar (1 element)
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

class SafetensorsReader {
 public:
  // Maps (or reads) and validates the file; throws caption::Error naming path and problem.
  static SafetensorsReader open(const std::string& path);
  // Validates bytes held in memory; label stands for the source in error messages.
  static SafetensorsReader from_bytes(std::vector<uint8_t> bytes, std::string label);

  SafetensorsReader(SafetensorsReader&&) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;
  ~SafetensorsReader();

  // All tensors in data-offset order (ties, i.e. zero-size tensors, by name).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when there is no tensor of that name.
  const TensorInfo* find(std::string_view name) const;
  // Throws caption::Error naming the file and the missing tensor.
  const TensorInfo& at(std::string_view name) const;
  // The tensor's bytes (nbytes() of them), pointing into the mapped file or buffer.
  std::span<const std::byte> data(const TensorInfo& info) const;
  // The "__metadata__" object (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The file path, or the label given to from_bytes.
  const std::string& path() const { return path_; }

 private:
  struct Storage;  // owns the mapping or the in-memory bytes
  SafetensorsReader(std::unique_ptr<Storage> storage, std::string path);
  void parse();

  std::unique_ptr<Storage> storage_;
  std::string path_;
  const std::byte* data_begin_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: `data` holds numel(shape) * dtype_size(dtype) bytes, in row-major
// order, little-endian (the host's order). May be null for a zero-size tensor.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a checkpoint atomically (temporary file + rename). Throws caption::Error naming
// the path and the problem: duplicate or reserved ("__metadata__") names, negative
// shapes, null data for a non-empty tensor, or any I/O failure.
void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace caption
