// Whole-file reading and atomic writing (see file_io.h). Uses C stdio rather than
// iostreams so that errors carry errno's description.
#include "data/image/file_io.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <unistd.h>

#include "engine/error.h"

namespace caption::data {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read_file_bytes(const fs::path& path, std::uintmax_t max_bytes) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  CAPTION_CHECK(!ec && fs::exists(st), path.string(), ": no such file");
  CAPTION_CHECK(fs::is_regular_file(st), path.string(), ": not a regular file");
  const std::uintmax_t size = fs::file_size(path, ec);
  CAPTION_CHECK(!ec, path.string(), ": cannot read the file size (", ec.message(), ")");
  CAPTION_CHECK(size <= max_bytes, path.string(), ": file too large (", size,
                " bytes, limit ", max_bytes, ")");

  std::FILE* f = std::fopen(path.c_str(), "rb");
  CAPTION_CHECK(f != nullptr, path.string(), ": cannot open (", std::strerror(errno), ")");
  std::vector<std::uint8_t> bytes(static_cast<size_t>(size));
  const size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  CAPTION_CHECK(!failed && got == bytes.size(), path.string(), ": read error (got ", got,
                " of ", bytes.size(), " bytes)");
  return bytes;
}

namespace {

// A name unique within this process and, through the pid, across processes.
fs::path temp_sibling(const fs::path& path) {
  static std::atomic<unsigned long> counter{0};
  return fs::path(path.string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)));
}

}  // namespace

void write_file_atomic(const fs::path& path, std::span<const std::uint8_t> bytes) {
  const fs::path tmp = temp_sibling(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  CAPTION_CHECK(f != nullptr, path.string(), ": cannot create (", std::strerror(errno), ")");
  const size_t put = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  bool ok = put == bytes.size() && std::fflush(f) == 0;
  const int write_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    throw Error(str(path.string(), ": write failed (", std::strerror(write_errno), ")"));
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(str(path.string(), ": cannot rename the temporary file into place (",
                    ec.message(), ")"));
  }
}

void write_file_atomic(const fs::path& path, std::string_view text) {
  write_file_atomic(path, std::span<const std::uint8_t>(
                              reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

}  // namespace caption::data
