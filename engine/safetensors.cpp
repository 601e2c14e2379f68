// safetensors reader and writer. See safetensors.h for the format and the choices.
//
// Validation order follows the reference crate (safetensors/src/tensor.rs, read_metadata
// and Metadata::validate): size prefix, header size limit, header within the file, UTF-8,
// '{' (the reference defines InvalidHeaderStart but has not switched it on; we do, as
// every writer emits '{' first), JSON, per-tensor entries, then the offsets: sorted by
// (begin, end), each tensor must start where the previous one ended, its byte count
// must match shape x dtype, and the last must end at the end of the file. Where the
// reference reports one "InvalidOffset" we say which of begin > end / out of range /
// overlap / gap it is, since that is what a user needs to find the broken writer.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "engine/error.h"

namespace caption {

namespace {

constexpr size_t kLengthPrefix = 8;
// serde_json's recursion limit: a header nested deeper is refused by the reference too.
constexpr int kMaxJsonDepth = 128;
constexpr std::string_view kMetadataKey = "__metadata__";

// Every dtype name the reference library knows. Those we do not hold in DType are
// refused as "unsupported" (a valid file we cannot use), anything else as "unknown".
constexpr std::string_view kKnownDtypeNames[] = {
    "BOOL",    "F4",          "F6_E2M3",     "F6_E3M2", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
    "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",     "U16", "F16", "BF16",    "I32",
    "U32",     "F32",         "C64",         "F64",     "I64", "U64"};

std::optional<DType> supported_dtype(std::string_view name) {
  for (DType t : {DType::F32, DType::F64, DType::I32, DType::I64})
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

bool is_known_dtype(std::string_view name) {
  return std::ranges::find(kKnownDtypeNames, name) != std::end(kKnownDtypeNames);
}

// The reference sorts tensors for writing by its Dtype enum order, descending; that enum
// is declared in increasing alignment: ..., BF16, I32, U32, F32, C64, F64, I64, U64.
int write_rank(DType t) {
  switch (t) {
    case DType::BF16:
      return -1;
    case DType::I32:
      return 0;
    case DType::F32:
      return 1;
    case DType::F64:
      return 2;
    case DType::I64:
      return 3;
  }
  return 0;
}

std::string errno_text(int err) { return std::strerror(err); }

// Multiplies with overflow detection.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated against overflow when read
  return n;
}

// ---- storage --------------------------------------------------------------------

struct SafetensorsReader::Storage {
  // Exactly one of the two holds the bytes: a read-only mapping or an owned buffer.
  void* map_addr = nullptr;
  size_t map_len = 0;
  std::vector<uint8_t> owned;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (map_addr != nullptr && ::munmap(map_addr, map_len) != 0)
      log_error(str("munmap failed: ", errno_text(errno)));
  }
  const std::byte* bytes() const {
    return map_addr != nullptr ? static_cast<const std::byte*>(map_addr)
                               : reinterpret_cast<const std::byte*>(owned.data());
  }
  size_t size() const { return map_addr != nullptr ? map_len : owned.size(); }
};

SafetensorsReader::SafetensorsReader(std::unique_ptr<Storage> storage, std::string path)
    : storage_(std::move(storage)), path_(std::move(path)) {}
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;
SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&&) noexcept = default;
SafetensorsReader::~SafetensorsReader() = default;

namespace {

// Closes a file descriptor on scope exit.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads the whole file into memory (the fallback when mmap is refused).
std::vector<uint8_t> read_all(int fd, size_t size, const std::string& path) {
  std::vector<uint8_t> bytes(size);
  size_t done = 0;
  while (done < size) {
    ssize_t got = ::pread(fd, bytes.data() + done, size - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    CAPTION_CHECK(got >= 0, path, ": read failed: ", errno_text(errno));
    CAPTION_CHECK(got > 0, path, ": file shrank while being read (", done, " of ", size,
                  " bytes)");
    done += static_cast<size_t>(got);
  }
  return bytes;
}

}  // namespace

SafetensorsReader SafetensorsReader::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CAPTION_CHECK(fd >= 0, path, ": cannot open safetensors file: ", errno_text(errno));
  FdCloser closer{fd};
  struct stat st {};
  CAPTION_CHECK(::fstat(fd, &st) == 0, path, ": cannot stat: ", errno_text(errno));
  CAPTION_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  const auto size = static_cast<size_t>(st.st_size);

  auto storage = std::make_unique<Storage>();
  if (size > 0) {  // mmap of zero bytes fails; an empty file is refused by parse()
    void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr != MAP_FAILED) {
      storage->map_addr = addr;
      storage->map_len = size;
    } else {
      storage->owned = read_all(fd, size, path);
    }
  }
  SafetensorsReader reader(std::move(storage), path);
  reader.parse();
  return reader;
}

SafetensorsReader SafetensorsReader::from_bytes(std::vector<uint8_t> bytes,
                                                std::string label) {
  auto storage = std::make_unique<Storage>();
  storage->owned = std::move(bytes);
  SafetensorsReader reader(std::move(storage), std::move(label));
  reader.parse();
  return reader;
}

// ---- parsing --------------------------------------------------------------------

namespace {

using nlohmann::json;

// Parses the header text, refusing duplicate keys at any level (nlohmann would keep the
// last silently, and the reference's serde keeps one of them: either way a tensor would
// vanish) and nesting deeper than serde_json allows.
json parse_header_json(std::string_view text, const std::string& path) {
  std::vector<std::set<std::string>> keys_per_object;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        CAPTION_CHECK(depth < kMaxJsonDepth, path,
                      ": invalid header: JSON nested deeper than ", kMaxJsonDepth, " levels");
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::array_start:
        CAPTION_CHECK(depth < kMaxJsonDepth, path,
                      ": invalid header: JSON nested deeper than ", kMaxJsonDepth, " levels");
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        bool inserted = keys_per_object.back().insert(key).second;
        CAPTION_CHECK(inserted, path, ": invalid header: duplicate key '", key, "'",
                      keys_per_object.size() == 1 ? " (tensor names must be unique)" : "");
        break;
      }
      case json::parse_event_t::object_end:
        keys_per_object.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw Error(str(path, ": invalid header: not valid JSON: ", e.what()));
  }
}

// A JSON number that is a non-negative integer fitting uint64 (serde's usize).
std::optional<uint64_t> as_unsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  return std::nullopt;
}

std::string describe_json(const json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

TensorInfo parse_tensor_entry(const std::string& name, const json& entry,
                              const std::string& path) {
  const std::string where = str(path, ": invalid header: tensor '", name, "'");
  CAPTION_CHECK(entry.is_object(), where, ": entry is not a JSON object");
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  CAPTION_CHECK(dtype_it != entry.end(), where, ": missing \"dtype\"");
  CAPTION_CHECK(dtype_it->is_string(), where, ": \"dtype\" is not a string");
  const auto& dtype_text = dtype_it->get_ref<const std::string&>();
  std::optional<DType> dtype = supported_dtype(dtype_text);
  if (!dtype) {
    CAPTION_CHECK(!is_known_dtype(dtype_text), path, ": unsupported dtype '", dtype_text,
                  "' for tensor '", name, "' (supported: F32, F64, I32, I64)");
    throw Error(str(path, ": invalid header: unknown dtype '", dtype_text, "' for tensor '",
                    name, "'"));
  }
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  CAPTION_CHECK(shape_it != entry.end(), where, ": missing \"shape\"");
  CAPTION_CHECK(shape_it->is_array(), where, ": \"shape\" is not an array");
  uint64_t numel = 1;
  for (const json& d : *shape_it) {
    CAPTION_CHECK(!(d.is_number_integer() && !d.is_number_unsigned()), where,
                  ": negative dimension ", describe_json(d), " in shape");
    std::optional<uint64_t> dim = as_unsigned(d);
    CAPTION_CHECK(dim.has_value(), where, ": shape dimension ", describe_json(d),
                  " is not a non-negative integer");
    CAPTION_CHECK(*dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                      !mul_overflows(numel, *dim, &numel),
                  where, ": shape ", describe_json(*shape_it), " overflows");
    info.shape.push_back(static_cast<int64_t>(*dim));
  }
  uint64_t nbytes = 0;
  CAPTION_CHECK(numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                    !mul_overflows(numel, dtype_size(info.dtype), &nbytes),
                where, ": shape ", describe_json(*shape_it), " overflows");

  auto offsets_it = entry.find("data_offsets");
  CAPTION_CHECK(offsets_it != entry.end(), where, ": missing \"data_offsets\"");
  CAPTION_CHECK(offsets_it->is_array() && offsets_it->size() == 2, where,
                ": \"data_offsets\" is not a [begin, end] pair");
  std::optional<uint64_t> begin = as_unsigned((*offsets_it)[0]);
  std::optional<uint64_t> end = as_unsigned((*offsets_it)[1]);
  CAPTION_CHECK(begin && end, where, ": data_offsets ", describe_json(*offsets_it),
                " are not non-negative integers");
  info.begin = *begin;
  info.end = *end;
  CAPTION_CHECK(info.begin <= info.end, path, ": invalid offset: tensor '", name,
                "' has data_offsets [", info.begin, ", ", info.end, "] with begin > end");
  // Checked here, before the layout, so that a lying shape is reported as such rather
  // than as the gap or overlap it causes further on.
  CAPTION_CHECK(info.end - info.begin == nbytes, path, ": invalid tensor info: tensor '", name,
                "' has shape ", describe_json(*shape_it), " and dtype ", dtype_text, " (",
                nbytes, " bytes) but data_offsets [", info.begin, ", ", info.end, "] hold ",
                info.end - info.begin, " bytes");
  return info;
}

}  // namespace

void SafetensorsReader::parse() {
  const std::byte* bytes = storage_->bytes();
  const uint64_t size = storage_->size();
  CAPTION_CHECK(size >= kLengthPrefix, path_, ": not a safetensors file: ", size,
                " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes, sizeof(n));  // little-endian host (static_assert in the header)
  CAPTION_CHECK(n <= kSafetensorsMaxHeaderSize, path_, ": header too large: ", n,
                " bytes (the limit is ", kSafetensorsMaxHeaderSize, ")");
  CAPTION_CHECK(n <= size - kLengthPrefix, path_, ": invalid header length: ", n,
                " bytes, beyond the end of the file (", size - kLengthPrefix,
                " bytes after the length; truncated?)");
  std::string_view text(reinterpret_cast<const char*>(bytes + kLengthPrefix), n);
  CAPTION_CHECK(!text.empty() && text.front() == '{', path_,
                ": invalid header start: the JSON header does not start with '{'");
  json header = parse_header_json(text, path_);
  // nlohmann checks UTF-8 inside strings, and bytes >= 0x80 outside strings are syntax
  // errors, so a header that parsed is valid UTF-8 as the reference requires.
  CAPTION_CHECK(header.is_object(), path_, ": invalid header: not a JSON object");

  data_begin_ = bytes + kLengthPrefix + n;
  data_size_ = size - kLengthPrefix - n;

  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (value.is_null()) continue;  // serde reads null as "no metadata"
      CAPTION_CHECK(value.is_object(), path_,
                    ": invalid header: \"__metadata__\" is not an object of strings");
      for (const auto& [mkey, mvalue] : value.items()) {
        CAPTION_CHECK(mvalue.is_string(), path_, ": invalid header: metadata value for key '",
                      mkey, "' is not a string (", describe_json(mvalue), ")");
        metadata_.emplace(mkey, mvalue.get<std::string>());
      }
      continue;
    }
    tensors_.push_back(parse_tensor_entry(key, value, path_));
  }

  // The layout: in (begin, end) order the tensors must tile the data section exactly.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t expected_begin = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : tensors_) {
    CAPTION_CHECK(t.end <= data_size_, path_, ": invalid offset: tensor '", t.name,
                  "' has data_offsets [", t.begin, ", ", t.end,
                  "] beyond the end of the data section (", data_size_,
                  " bytes; file truncated?)");
    CAPTION_CHECK(t.begin >= expected_begin, path_, ": invalid offset: tensor '", t.name,
                  "' [", t.begin, ", ", t.end, "] overlaps tensor '",
                  previous ? previous->name : "", "' [", previous ? previous->begin : 0, ", ",
                  expected_begin, "]");
    CAPTION_CHECK(t.begin == expected_begin, path_, ": invalid offset: gap of ",
                  t.begin - expected_begin, " bytes before tensor '", t.name,
                  "' (data_offsets [", t.begin, ", ", t.end, "]); tensors must be contiguous");
    expected_begin = t.end;
    previous = &t;
  }
  CAPTION_CHECK(expected_begin == data_size_, path_, ": incomplete buffer: the tensors cover ",
                expected_begin, " bytes of the ", data_size_,
                "-byte data section; the rest belongs to no tensor");

  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorInfo* SafetensorsReader::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsReader::at(std::string_view name) const {
  const TensorInfo* info = find(name);
  CAPTION_CHECK(info != nullptr, path_, ": no tensor named '", name, "' (the file holds ",
                tensors_.size(), " tensors)");
  return *info;
}

std::span<const std::byte> SafetensorsReader::data(const TensorInfo& info) const {
  // Guards against a TensorInfo taken from another reader.
  CAPTION_CHECK(info.begin <= info.end && info.end <= data_size_, path_, ": tensor '",
                info.name, "' [", info.begin, ", ", info.end, "] is not in this file");
  return {data_begin_ + info.begin, static_cast<size_t>(info.end - info.begin)};
}

// ---- writing --------------------------------------------------------------------

namespace {

// The temporary file beside the target; unlinked on scope exit unless committed.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    namespace fs = std::filesystem;
    static std::atomic<unsigned> counter{0};
    fs::path p(target);
    fs::path dir = p.parent_path();
    for (int attempt = 0;; ++attempt) {
      std::string name =
          str(".", p.filename().string(), ".tmp.", ::getpid(), ".", counter.fetch_add(1));
      path_ = (dir / name).string();
      // 0666 under the umask: the same mode a plain create would give the target.
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) break;
      int err = errno;
      CAPTION_CHECK(err == EEXIST && attempt < 100, target_,
                    ": cannot create temporary file '", path_, "': ", errno_text(err));
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && ::unlink(path_.c_str()) != 0)
      log_error(
          str(target_, ": cannot remove temporary file '", path_, "': ", errno_text(errno)));
  }

  void write(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      ssize_t put = ::write(fd_, p, size);
      if (put < 0 && errno == EINTR) continue;
      CAPTION_CHECK(put > 0, target_, ": write to '", path_,
                    "' failed: ", put < 0 ? errno_text(errno) : "no progress");
      p += put;
      size -= static_cast<size_t>(put);
    }
  }

  // Flushes to disk, closes and renames over the target.
  void commit() {
    CAPTION_CHECK(::fsync(fd_) == 0, target_, ": fsync of '", path_,
                  "' failed: ", errno_text(errno));
    int fd = std::exchange(fd_, -1);
    CAPTION_CHECK(::close(fd) == 0, target_, ": close of '", path_,
                  "' failed: ", errno_text(errno));
    CAPTION_CHECK(::rename(path_.c_str(), target_.c_str()) == 0, target_, ": cannot rename '",
                  path_, "' to the target: ", errno_text(errno));
    committed_ = true;
  }

 private:
  std::string target_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate and plan the layout before touching the file system.
  std::vector<uint64_t> sizes(tensors.size());
  std::set<std::string_view> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    CAPTION_CHECK(t.name != kMetadataKey, path, ": cannot write a tensor named '",
                  kMetadataKey, "' (the key is reserved for metadata)");
    CAPTION_CHECK(names.insert(t.name).second, path, ": duplicate tensor name '", t.name, "'");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      CAPTION_CHECK(d >= 0, path, ": tensor '", t.name, "' has negative dimension ", d);
      CAPTION_CHECK(!mul_overflows(numel, static_cast<uint64_t>(d), &numel), path,
                    ": tensor '", t.name, "' shape overflows");
    }
    CAPTION_CHECK(!mul_overflows(numel, dtype_size(t.dtype), &sizes[i]), path, ": tensor '",
                  t.name, "' shape overflows");
    CAPTION_CHECK(t.data != nullptr || sizes[i] == 0, path, ": tensor '", t.name,
                  "' has no data");
  }
  std::vector<size_t> index(tensors.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = i;
  std::sort(index.begin(), index.end(), [&](size_t a, size_t b) {
    int ra = write_rank(tensors[a].dtype), rb = write_rank(tensors[b].dtype);
    if (ra != rb) return ra > rb;
    return tensors[a].name < tensors[b].name;
  });

  // ordered_json keeps insertion order: "__metadata__" first, then tensors by offset.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[std::string(kMetadataKey)] = std::move(meta);
  }
  uint64_t offset = 0;
  for (size_t i : index) {
    const TensorToWrite& t = tensors[i];
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = std::string(dtype_name(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + sizes[i]};
    header[t.name] = std::move(entry);
    offset += sizes[i];
  }
  std::string text;
  try {
    text = header.dump();  // compact, UTF-8 kept as is (like serde_json::to_string)
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        str(path, ": cannot encode header (names and metadata must be UTF-8): ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  CAPTION_CHECK(text.size() <= kSafetensorsMaxHeaderSize, path, ": header of ", text.size(),
                " bytes exceeds the ", kSafetensorsMaxHeaderSize, "-byte limit");

  TempFile file(path);
  const uint64_t n = text.size();
  file.write(&n, sizeof(n));
  file.write(text.data(), text.size());
  for (size_t i : index)
    if (sizes[i] > 0) file.write(tensors[i].data, sizes[i]);
  file.commit();
}

}  // namespace caption
