// Tests of engine/safetensors: bit-exact round trips, interoperability with an
// independent standard-library Python writer/reader (tests/engine/safetensors_stdlib.py,
// which follows the reference crate's serialisation and validation), refusal of
// hand-made malformed bytes with messages that name the source and the problem (each
// also checked against the Python reader's verdict), truncation, and the writer's
// atomicity.
#include "engine/safetensors.h"
#include "tests/harness/expect_error.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace caption {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPython = CAPTION_REFERENCE_PYTHON;

// A fresh directory per test under the build tree's test temp dir (emptied first, so
// reruns do not pile up; ctest runs each test in its own process).
fs::path test_dir() { return caption::testing::scratch_dir("safetensors"); }

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::vector<uint8_t> span_bytes(std::span<const std::byte> s) {
  std::vector<uint8_t> bytes(s.size());
  if (!s.empty()) std::memcpy(bytes.data(), s.data(), s.size());
  return bytes;
}

// 8-byte length (of `header`, unpadded) + header + data_size bytes of a pattern.
std::vector<uint8_t> file_bytes(std::string_view header, size_t data_size) {
  std::vector<uint8_t> out(8);
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_size; ++i) out.push_back(static_cast<uint8_t>(i * 7 + 1));
  return out;
}

// As file_bytes, with an arbitrary (lying) header length.
std::vector<uint8_t> file_bytes_with_length(uint64_t n, std::string_view header) {
  std::vector<uint8_t> out(8);
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  return out;
}

// Runs the Python script; returns the exit status and fills *out with its stdout.
int run_python(const std::string& command, const fs::path& path, std::string* out) {
  std::string cmd =
      str(kPython, " '", CAPTION_SOURCE_DIR, "/tests/engine/safetensors_stdlib.py' ", command,
          " '", path.string(), "'");
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof(buf), pipe)) > 0) text.append(buf, got);
  int status = ::pclose(pipe);
  if (out != nullptr) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool python_available() { return ::access(kPython, X_OK) == 0; }

#define SKIP_WITHOUT_PYTHON()                                                  \
  do {                                                                         \
    if (!python_available())                                                   \
      GTEST_SKIP() << kPython                                                  \
                   << " is not available; the Python interoperability checks " \
                      "need it";                                               \
  } while (0)

using caption::testing::error_of;

// ---- round trip ---------------------------------------------------------------------

struct Sample {
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<int32_t> i32;
  std::vector<int64_t> i64;
  std::vector<float> scalar{-7.25f};
  std::vector<float> bias;
  std::vector<TensorToWrite> tensors;
  std::map<std::string, std::string> metadata{
      {"format", "pt"},
      {"epoch", "3"},
      {"caption", "un chat \xc3\xa9tonn\xc3\xa9 \xe2\x9c\x93"},
      {"empty", ""}};

  Sample() {
    for (int i = 0; i < 12; ++i)
      f32.push_back(std::sin(0.37f * static_cast<float>(i)) * 100.0f);
    f32[1] = -0.0f;
    f32[2] = std::numeric_limits<float>::infinity();
    f32[3] = std::numeric_limits<float>::denorm_min();
    f32[4] = std::bit_cast<float>(0x7fc12345u);  // a NaN with a payload: bits must survive
    for (int i = 0; i < 5; ++i) f64.push_back(1.0 / (i + 3) - 1e-300 * i);
    f64[4] = -std::numeric_limits<double>::infinity();
    i32 = {std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()};
    i64 = {std::numeric_limits<int64_t>::min(), 42, std::numeric_limits<int64_t>::max()};
    for (int i = 0; i < 7; ++i) bias.push_back(0.5f * static_cast<float>(i) - 1.0f);
    tensors = {
        {"encoder.weight", DType::F32, {3, 4}, f32.data()},
        {"encoder.bias", DType::F32, {7}, bias.data()},
        {"grad_check", DType::F64, {5}, f64.data()},
        {"token_ids", DType::I32, {2, 2}, i32.data()},
        {"lengths", DType::I64, {3}, i64.data()},
        {"temperature", DType::F32, {}, scalar.data()},
        {"no_rows", DType::F32, {0, 3}, nullptr},
        {"no_ids", DType::I32, {0}, nullptr},
        {"\xc3\xa9tiquette", DType::I64, {1, 0, 2}, nullptr},
    };
  }
};

void expect_matches_sample(const SafetensorsReader& reader, const Sample& s) {
  ASSERT_EQ(reader.tensors().size(), s.tensors.size());
  for (const TensorToWrite& t : s.tensors) {
    SCOPED_TRACE(t.name);
    const TensorInfo* info = reader.find(t.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->name, t.name);
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    EXPECT_EQ(info->numel(), numel);
    ASSERT_EQ(info->nbytes(), static_cast<uint64_t>(numel) * dtype_size(t.dtype));
    std::span<const std::byte> bytes = reader.data(*info);
    ASSERT_EQ(bytes.size(), info->nbytes());
    if (numel > 0) {
      EXPECT_EQ(std::memcmp(bytes.data(), t.data, bytes.size()), 0);
    }
  }
  EXPECT_EQ(reader.metadata(), s.metadata);
}

TEST(SafetensorsRoundTrip, AllDtypesScalarZeroSizeAndMetadataAreBitExact) {
  fs::path path = test_dir() / "model.safetensors";
  Sample s;
  write_safetensors(path.string(), s.tensors, s.metadata);
  SafetensorsReader reader = SafetensorsReader::open(path.string());
  EXPECT_EQ(reader.path(), path.string());
  expect_matches_sample(reader, s);

  // tensors() is in offset order and tiles the data section.
  uint64_t next = 0;
  for (const TensorInfo& t : reader.tensors()) {
    EXPECT_EQ(t.begin, next) << t.name;
    next = t.end;
  }

  // The same bytes read from memory give the same result.
  SafetensorsReader from_memory =
      SafetensorsReader::from_bytes(read_bytes(path), "in-memory copy");
  EXPECT_EQ(from_memory.path(), "in-memory copy");
  expect_matches_sample(from_memory, s);
}

TEST(SafetensorsRoundTrip, WrittenDataIsAlignedForEachDtype) {
  fs::path path = test_dir() / "aligned.safetensors";
  Sample s;
  write_safetensors(path.string(), s.tensors, s.metadata);
  std::vector<uint8_t> bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8";
  SafetensorsReader reader = SafetensorsReader::open(path.string());
  for (const TensorInfo& t : reader.tensors()) {
    EXPECT_EQ(t.begin % dtype_size(t.dtype), 0u) << t.name;
    // The mapping is page-aligned, so the pointer is aligned too.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(reader.data(t).data()) % dtype_size(t.dtype), 0u)
        << t.name;
  }
}

TEST(SafetensorsRoundTrip, NoTensorsNoMetadata) {
  fs::path path = test_dir() / "empty.safetensors";
  write_safetensors(path.string(), {}, {});
  std::vector<uint8_t> bytes = read_bytes(path);
  // "{}" padded to 8 bytes, as the reference writes an empty dict.
  EXPECT_EQ(bytes, file_bytes("{}      ", 0));
  SafetensorsReader reader = SafetensorsReader::open(path.string());
  EXPECT_TRUE(reader.tensors().empty());
  EXPECT_TRUE(reader.metadata().empty());
}

TEST(SafetensorsRoundTrip, ReaderIsMovable) {
  Sample s;
  fs::path path = test_dir() / "move.safetensors";
  write_safetensors(path.string(), s.tensors, s.metadata);
  SafetensorsReader a = SafetensorsReader::open(path.string());
  const std::byte* before = a.data(a.at("encoder.weight")).data();
  SafetensorsReader b = std::move(a);
  EXPECT_EQ(b.data(b.at("encoder.weight")).data(), before);  // still the same mapping
  SafetensorsReader c = SafetensorsReader::from_bytes(file_bytes("{}", 0), "other");
  c = std::move(b);
  expect_matches_sample(c, s);
}

// ---- writer layout ----------------------------------------------------------------

TEST(SafetensorsWriter, LayoutFollowsTheReferenceSerialiser) {
  fs::path path = test_dir() / "layout.safetensors";
  std::vector<int32_t> i32{1};
  std::vector<float> f32{2};
  std::vector<double> f64{3};
  std::vector<int64_t> i64{4};
  std::vector<TensorToWrite> tensors{{"b", DType::I32, {1}, i32.data()},
                                     {"a", DType::F32, {1}, f32.data()},
                                     {"c", DType::F64, {1}, f64.data()},
                                     {"d", DType::I64, {1}, i64.data()},
                                     {"a2", DType::I32, {1}, i32.data()}};
  write_safetensors(path.string(), tensors, {{"z", "1"}, {"m", "2"}});
  std::vector<uint8_t> bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header, R"({"__metadata__":{"m":"2","z":"1"},)"
                    R"("d":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                    R"("c":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},)"
                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
                    R"("a2":{"dtype":"I32","shape":[1],"data_offsets":[20,24]},)"
                    R"("b":{"dtype":"I32","shape":[1],"data_offsets":[24,28]}}     )");
  EXPECT_EQ(bytes.size(), 8 + n + 28);
}

TEST(SafetensorsWriter, RefusesBadInputBeforeTouchingTheFile) {
  fs::path dir = test_dir();
  fs::path path = dir / "bad.safetensors";
  std::vector<float> v{1, 2};
  auto refused = [&](std::vector<TensorToWrite> tensors, const std::string& problem) {
    std::string msg = error_of([&] { write_safetensors(path.string(), tensors, {}); });
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
  };
  refused({{"x", DType::F32, {2}, v.data()}, {"x", DType::F32, {2}, v.data()}},
          "duplicate tensor name 'x'");
  refused({{"__metadata__", DType::F32, {2}, v.data()}}, "reserved");
  refused({{"x", DType::F32, {-2}, v.data()}}, "negative dimension -2");
  refused({{"x", DType::F32, {2}, nullptr}}, "has no data");
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(SafetensorsWriter, FailureInMissingDirectoryLeavesNoFile) {
  fs::path dir = test_dir();
  fs::path path = dir / "no_such_dir" / "model.safetensors";
  std::vector<float> v{1, 2};
  std::vector<TensorToWrite> tensors{{"x", DType::F32, {2}, v.data()}};
  std::string msg = error_of([&] { write_safetensors(path.string(), tensors, {}); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot create temporary file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir));
}

// A write that fails half-way (the file-size limit stops it) leaves the previous file
// untouched and removes the temporary file.
TEST(SafetensorsWriter, FailureMidWriteKeepsTheOldFileAndRemovesTheTemporary) {
  fs::path dir = test_dir();
  fs::path path = dir / "model.safetensors";
  std::vector<float> small{1, 2, 3};
  write_safetensors(path.string(),
                    std::vector<TensorToWrite>{{"x", DType::F32, {3}, small.data()}}, {});
  std::vector<uint8_t> before = read_bytes(path);

  std::vector<float> big(1 << 20, 0.5f);
  rlimit old_limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  if (old_limit.rlim_cur != RLIM_INFINITY && old_limit.rlim_cur < 65536)
    GTEST_SKIP() << "file-size limit already below the test's";
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);  // make the write fail with EFBIG instead
  rlimit limit = old_limit;
  limit.rlim_cur = 65536;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  std::string msg = error_of([&] {
    write_safetensors(path.string(),
                      std::vector<TensorToWrite>{{"x", DType::F32, {1 << 20}, big.data()}},
                      {});
  });
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("write to"), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), before);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir))
    left.push_back(entry.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"model.safetensors"});
}

TEST(SafetensorsWriter, OverwritesAnExistingFileAndLeavesNoTemporary) {
  fs::path dir = test_dir();
  fs::path path = dir / "model.safetensors";
  std::vector<int64_t> a{1, 2}, b{3, 4, 5};
  write_safetensors(path.string(),
                    std::vector<TensorToWrite>{{"t", DType::I64, {2}, a.data()}}, {});
  write_safetensors(path.string(),
                    std::vector<TensorToWrite>{{"t", DType::I64, {3}, b.data()}}, {});
  SafetensorsReader reader = SafetensorsReader::open(path.string());
  EXPECT_EQ(span_bytes(reader.data(reader.at("t"))), as_bytes(b));
  size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1u);
}

// ---- lookups and opening --------------------------------------------------------------

TEST(SafetensorsReader, MissingTensorLookup) {
  SafetensorsReader reader = SafetensorsReader::from_bytes(
      file_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
      "weights.bin");
  EXPECT_EQ(reader.find("nope"), nullptr);
  EXPECT_NE(reader.find("w"), nullptr);
  std::string msg = error_of([&] { reader.at("nope"); });
  EXPECT_NE(msg.find("weights.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no tensor named 'nope'"), std::string::npos) << msg;
}

TEST(SafetensorsReader, OpenRefusesMissingFileAndDirectory) {
  fs::path dir = test_dir();
  std::string missing = (dir / "absent.safetensors").string();
  std::string msg = error_of([&] { SafetensorsReader::open(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  msg = error_of([&] { SafetensorsReader::open(dir.string()); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
}

TEST(SafetensorsReader, MetadataNullMeansNone) {
  SafetensorsReader reader =
      SafetensorsReader::from_bytes(file_bytes(R"({"__metadata__":null})", 0), "null-meta");
  EXPECT_TRUE(reader.metadata().empty());
  EXPECT_TRUE(reader.tensors().empty());
}

TEST(SafetensorsReader, AcceptsUnsortedHeaderAndUnknownEntryFields) {
  // Another writer may list tensors in any order, pad with other whitespace and add
  // fields the reference ignores.
  SafetensorsReader reader = SafetensorsReader::from_bytes(
      file_bytes(
          "{\"b\":{\"data_offsets\":[8,12],\"shape\":[1],\"dtype\":\"I32\"},\n"
          "\"a\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8],\"extra\":[1]}}\n\t",
          12),
      "unsorted");
  ASSERT_EQ(reader.tensors().size(), 2u);
  EXPECT_EQ(reader.tensors()[0].name, "a");
  EXPECT_EQ(reader.tensors()[1].name, "b");
}

// ---- truncation -----------------------------------------------------------------------

TEST(SafetensorsReader, TruncatedFileIsRefusedAtEveryCut) {
  fs::path dir = test_dir();
  fs::path path = dir / "full.safetensors";
  Sample s;
  write_safetensors(path.string(), s.tensors, s.metadata);
  std::vector<uint8_t> full = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, full.data(), 8);
  std::vector<size_t> cuts{0,
                           1,
                           7,
                           8,
                           9,
                           8 + n / 2,
                           8 + n - 1,
                           8 + n,
                           8 + n + 1,
                           8 + n + 13,
                           full.size() - 4,
                           full.size() - 1};
  for (size_t cut : cuts) {
    SCOPED_TRACE(str("cut at ", cut, " of ", full.size()));
    std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<long>(cut));
    std::string msg =
        error_of([&] { SafetensorsReader::from_bytes(part, "cut.safetensors"); });
    EXPECT_NE(msg.find("cut.safetensors"), std::string::npos) << msg;
    if (cut < 8) {
      EXPECT_NE(msg.find("shorter than the 8-byte header length"), std::string::npos) << msg;
    } else {
      EXPECT_NE(msg.find("truncated?"), std::string::npos) << msg;
    }
  }
  // And through open(), from a file cut short on disk.
  fs::path cut_path = dir / "cut.safetensors";
  write_bytes(cut_path, std::vector<uint8_t>(full.begin(), full.end() - 3));
  std::string msg = error_of([&] { SafetensorsReader::open(cut_path.string()); });
  EXPECT_NE(msg.find(cut_path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("beyond the end of the data section"), std::string::npos) << msg;
}

// ---- malformed bytes --------------------------------------------------------------------

// What the reference library (modelled by safetensors_stdlib.py) does with the case.
enum class ReferenceVerdict { kRefuses, kAccepts };

struct MalformedCase {
  std::string name;
  std::vector<uint8_t> bytes;
  std::vector<std::string> problem;  // substrings the message must hold
  ReferenceVerdict reference = ReferenceVerdict::kRefuses;
};

// Names the case in test output instead of dumping its bytes.
void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

std::string tensor(std::string_view name, std::string_view dtype, std::string_view shape,
                   std::string_view offsets) {
  return str("\"", name, "\":{\"dtype\":\"", dtype, "\",\"shape\":", shape,
             ",\"data_offsets\":", offsets, "}");
}

// "{e1,e2,...}" (built with str(): GCC 12 warns falsely on "{" + std::string).
std::string braces(const std::vector<std::string>& entries) {
  std::string out = "{";
  for (size_t i = 0; i < entries.size(); ++i) out += str(i ? "," : "", entries[i]);
  return out + "}";
}

std::vector<MalformedCase> malformed_cases() {
  const std::string a8 = tensor("a", "F32", "[2]", "[0,8]");
  return {
      {"EmptyFile", {}, {"0 bytes, shorter than the 8-byte header length"}},
      {"ShorterThan8Bytes",
       {1, 0, 0, 0, 0},
       {"5 bytes, shorter than the 8-byte header length"}},
      {"HeaderLengthBeyondFile",
       file_bytes_with_length(1000, "{}"),
       {"invalid header length: 1000 bytes, beyond the end of the file"}},
      {"HeaderTooLarge",
       file_bytes_with_length(100'000'001, "{}"),
       {"header too large: 100000001 bytes"}},
      {"HeaderLengthMaxU64", file_bytes_with_length(~uint64_t{0}, "{}"), {"header too large"}},
      {"HeaderEmpty", file_bytes("", 0), {"does not start with '{'"}},
      {"HeaderNotStartingWithBrace", file_bytes("[]", 0), {"does not start with '{'"}},
      {"HeaderLeadingSpace", file_bytes(" {}", 0), {"does not start with '{'"}},
      {"HeaderNotJson", file_bytes("{not json}", 0), {"invalid header: not valid JSON"}},
      {"HeaderTrailingGarbage", file_bytes("{} x", 0), {"not valid JSON"}},
      {"HeaderInvalidUtf8", file_bytes("{\"\xff\":1}", 0), {"not valid JSON"}},
      {"HeaderUnterminated", file_bytes("{\"a\":{", 0), {"not valid JSON"}},
      {"HeaderNestedTooDeep",
       file_bytes(str("{\"a\":", std::string(200, '['), std::string(200, ']'), "}"), 0),
       {"nested deeper than 128 levels"}},
      {"EntryNotObject",
       file_bytes(R"({"a":5})", 0),
       {"tensor 'a'", "entry is not a JSON object"}},
      {"MissingDtype",
       file_bytes(R"({"a":{"shape":[],"data_offsets":[0,4]}})", 4),
       {"tensor 'a'", "missing \"dtype\""}},
      {"MissingOffsets",
       file_bytes(R"({"a":{"dtype":"F32","shape":[]}})", 4),
       {"tensor 'a'", "missing \"data_offsets\""}},
      {"OffsetsNotPair",
       file_bytes(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0]}})", 4),
       {"tensor 'a'", "not a [begin, end] pair"}},
      {"NegativeOffset",
       file_bytes(braces({tensor("a", "F32", "[2]", "[-8,0]")}), 8),
       {"tensor 'a'", "not non-negative integers"}},
      {"OffsetsOutOfRange",
       file_bytes(braces({tensor("a", "F32", "[4]", "[0,16]")}), 8),
       {"tensor 'a'", "[0, 16] beyond the end of the data section (8 bytes"}},
      {"OverlappingOffsets",
       file_bytes(
           braces({tensor("a", "F32", "[4]", "[0,16]"), tensor("b", "F32", "[4]", "[8,24]")}),
           24),
       {"tensor 'b' [8, 24] overlaps tensor 'a' [0, 16]"}},
      {"SameOffsetsTwice",
       file_bytes(braces({a8, tensor("b", "F32", "[2]", "[0,8]")}), 8),
       {"tensor 'b' [0, 8] overlaps tensor 'a'"}},
      {"GapBetweenTensors",
       file_bytes(braces({a8, tensor("b", "F32", "[2]", "[12,20]")}), 20),
       {"gap of 4 bytes before tensor 'b'"}},
      {"FirstTensorNotAtZero",
       file_bytes(braces({tensor("a", "F32", "[2]", "[4,12]")}), 12),
       {"gap of 4 bytes before tensor 'a'"}},
      {"BufferNotFullyCovered",
       file_bytes(braces({a8}), 16),
       {"incomplete buffer", "cover 8 bytes of the 16-byte data section"}},
      {"DataWithoutTensors",
       file_bytes("{}", 8),
       {"incomplete buffer", "cover 0 bytes of the 8-byte data section"}},
      {"BeginAfterEnd",
       file_bytes(braces({tensor("a", "F32", "[2]", "[8,0]")}), 8),
       {"tensor 'a'", "[8, 0] with begin > end"}},
      {"ShapeDoesNotMatchByteCount",
       file_bytes(braces({tensor("a", "F32", "[3]", "[0,16]")}), 16),
       {"tensor 'a'", "shape [3] and dtype F32 (12 bytes)", "hold 16 bytes"}},
      {"ScalarWithTwoElements",
       file_bytes(braces({tensor("a", "I64", "[]", "[0,16]")}), 16),
       {"tensor 'a'", "shape [] and dtype I64 (8 bytes)"}},
      {"NegativeShape",
       file_bytes(braces({tensor("a", "F32", "[-1,4]", "[0,0]")}), 0),
       {"tensor 'a'", "negative dimension -1"}},
      {"FractionalShape",
       file_bytes(braces({tensor("a", "F32", "[2.5]", "[0,8]")}), 8),
       {"tensor 'a'", "dimension 2.5 is not a non-negative integer"}},
      {"ShapeOverflows",
       file_bytes(braces({tensor("a", "F32", "[1099511627776,1099511627776]", "[0,8]")}), 8),
       {"tensor 'a'", "overflows"}},
      {"UnknownDtype",
       file_bytes(braces({tensor("a", "F33", "[2]", "[0,8]")}), 8),
       {"unknown dtype 'F33' for tensor 'a'"}},
      {"LowercaseDtype",
       file_bytes(braces({tensor("a", "f32", "[2]", "[0,8]")}), 8),
       {"unknown dtype 'f32' for tensor 'a'"}},
      {"UnsupportedDtype",
       file_bytes(braces({tensor("a", "BF16", "[2]", "[0,4]")}), 4),
       {"unsupported dtype 'BF16' for tensor 'a'"},
       ReferenceVerdict::kAccepts},
      {"MetadataValueNotString",
       file_bytes(str(R"({"__metadata__":{"ok":"yes","k":1},)", a8, "}"), 8),
       {"metadata value for key 'k' is not a string"}},
      {"MetadataNotObject",
       file_bytes(R"({"__metadata__":"x"})", 0),
       {"\"__metadata__\" is not an object"}},
      {"DuplicateTensorNames",
       file_bytes(braces({a8, tensor("a", "F32", "[2]", "[8,16]")}), 16),
       {"duplicate key 'a'", "tensor names must be unique"}},
      {"DuplicateFieldInEntry",
       file_bytes(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                  8),
       {"duplicate key 'dtype'"}},
  };
}

class SafetensorsMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(SafetensorsMalformed, RefusedWithMessageNamingSourceAndProblem) {
  const MalformedCase& c = GetParam();
  std::string msg =
      error_of([&] { SafetensorsReader::from_bytes(c.bytes, "handmade.safetensors"); });
  ASSERT_FALSE(msg.empty()) << "accepted";
  EXPECT_EQ(msg.rfind("handmade.safetensors: ", 0), 0u) << msg;
  for (const std::string& part : c.problem)
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
}

TEST_P(SafetensorsMalformed, OpenFromDiskNamesThePath) {
  const MalformedCase& c = GetParam();
  fs::path path = test_dir() / "bad.safetensors";
  write_bytes(path, c.bytes);
  std::string msg = error_of([&] { SafetensorsReader::open(path.string()); });
  EXPECT_EQ(msg.rfind(path.string() + ": ", 0), 0u) << msg;
  for (const std::string& part : c.problem)
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
}

// The independent reader agrees: every case is refused by the reference rules, except the
// dtypes that are valid safetensors but outside this engine.
TEST_P(SafetensorsMalformed, StdlibReaderAgrees) {
  SKIP_WITHOUT_PYTHON();
  const MalformedCase& c = GetParam();
  fs::path path = test_dir() / "bad.safetensors";
  write_bytes(path, c.bytes);
  int status = run_python("read", path, nullptr);
  EXPECT_EQ(status, c.reference == ReferenceVerdict::kRefuses ? 1 : 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, SafetensorsMalformed, ::testing::ValuesIn(malformed_cases()),
                         [](const ::testing::TestParamInfo<MalformedCase>& param) {
                           return param.param.name;
                         });

// ---- interoperability with the standard-library Python writer/reader ---------------------

// The sample of safetensors_stdlib.py `write`.
struct PythonSample {
  std::vector<float> embed{-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f};
  std::vector<double> bias{1.0 / 3.0, -2.5, 1e300, -0.0};
  std::vector<int32_t> ids{std::numeric_limits<int32_t>::min(), 0,
                           std::numeric_limits<int32_t>::max()};
  std::vector<int64_t> lengths{std::numeric_limits<int64_t>::min(),
                               std::numeric_limits<int64_t>::max()};
  std::vector<float> scale{3.5f};
  std::vector<TensorToWrite> tensors{
      {"embed.weight", DType::F32, {2, 3}, embed.data()},
      {"head.bias", DType::F64, {4}, bias.data()},
      {"ids", DType::I32, {3}, ids.data()},
      {"lengths", DType::I64, {2, 1}, lengths.data()},
      {"scale", DType::F32, {}, scale.data()},
      {"empty", DType::F32, {0, 4}, nullptr},
      {"zz.empty_i64", DType::I64, {0}, nullptr},
  };
  std::map<std::string, std::string> metadata{{"format", "pt"},
                                              {"note", "written by safetensors_stdlib.py"},
                                              {"unicode", "l\xc3\xa9gende \xe2\x9c\x93"}};
};

TEST(SafetensorsPython, ReadsFileFromStdlibWriterAndWritesTheSameBytes) {
  SKIP_WITHOUT_PYTHON();
  fs::path dir = test_dir();
  fs::path theirs = dir / "python.safetensors";
  ASSERT_EQ(run_python("write", theirs, nullptr), 0);
  SafetensorsReader reader = SafetensorsReader::open(theirs.string());
  PythonSample s;
  ASSERT_EQ(reader.tensors().size(), s.tensors.size());
  for (const TensorToWrite& t : s.tensors) {
    SCOPED_TRACE(t.name);
    const TensorInfo& info = reader.at(t.name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    std::span<const std::byte> bytes = reader.data(info);
    if (!bytes.empty()) {
      EXPECT_EQ(std::memcmp(bytes.data(), t.data, bytes.size()), 0);
    }
  }
  EXPECT_EQ(reader.metadata(), s.metadata);

  // Our writer lays the same content out byte for byte as the reference serialiser.
  fs::path ours = dir / "ours.safetensors";
  write_safetensors(ours.string(), s.tensors, s.metadata);
  EXPECT_EQ(read_bytes(ours), read_bytes(theirs));
}

// Compares a value printed by the script (exact repr, or "nan"/"inf"/"-inf") bit for bit.
void expect_float_equal(const json& printed, double expected) {
  if (std::isnan(expected)) {
    EXPECT_EQ(printed, "nan");
  } else if (std::isinf(expected)) {
    EXPECT_EQ(printed, expected > 0 ? "inf" : "-inf");
  } else {
    ASSERT_TRUE(printed.is_number()) << printed;
    EXPECT_EQ(std::bit_cast<uint64_t>(printed.get<double>()),
              std::bit_cast<uint64_t>(expected))
        << printed << " vs " << expected;
  }
}

TEST(SafetensorsPython, StdlibReaderReadsOurFile) {
  SKIP_WITHOUT_PYTHON();
  fs::path path = test_dir() / "ours.safetensors";
  Sample s;
  write_safetensors(path.string(), s.tensors, s.metadata);
  std::string out;
  ASSERT_EQ(run_python("read", path, &out), 0) << out;
  json summary = json::parse(out);

  ASSERT_TRUE(summary["metadata"].is_object());
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(summary["metadata"].get<StringMap>(), s.metadata);

  SafetensorsReader reader = SafetensorsReader::open(path.string());
  const json& tensors = summary["tensors"];
  ASSERT_EQ(tensors.size(), s.tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const json& t = tensors[i];
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    const TensorInfo& info = reader.at(name);
    EXPECT_EQ(t["dtype"], std::string(dtype_name(info.dtype)));
    EXPECT_EQ(t["shape"].get<std::vector<int64_t>>(), info.shape);
    EXPECT_EQ(t["data_offsets"][0].get<uint64_t>(), info.begin);
    EXPECT_EQ(t["data_offsets"][1].get<uint64_t>(), info.end);
    const json& values = t["values"];
    ASSERT_EQ(values.size(), static_cast<size_t>(info.numel()));
    const TensorToWrite* src = nullptr;
    for (const TensorToWrite& w : s.tensors)
      if (w.name == name) src = &w;
    ASSERT_NE(src, nullptr);
    for (size_t k = 0; k < values.size(); ++k) {
      SCOPED_TRACE(k);
      switch (info.dtype) {
        case DType::F32: {
          float v = static_cast<const float*>(src->data)[k];
          if (std::isnan(v)) {
            EXPECT_EQ(values[k], "nan");  // the payload is checked by the byte comparisons
          } else {
            expect_float_equal(values[k], static_cast<double>(v));
          }
          break;
        }
        case DType::F64:
          expect_float_equal(values[k], static_cast<const double*>(src->data)[k]);
          break;
        case DType::I32:
          EXPECT_EQ(values[k].get<int64_t>(), static_cast<const int32_t*>(src->data)[k]);
          break;
        case DType::I64:
          EXPECT_EQ(values[k].get<int64_t>(), static_cast<const int64_t*>(src->data)[k]);
          break;
        case DType::BF16:
          ADD_FAILURE() << "the writer cases hold no bfloat16 tensor";
          break;
      }
    }
  }
}

}  // namespace
}  // namespace caption
