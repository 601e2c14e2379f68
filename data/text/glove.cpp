// GloVe text reading and embedding initialisation (see glove.h for the contract).
//
// The file is read in large blocks with fread and cut into lines in place (no string
// per line); each line is split into fields once. Fields of unused words are checked
// against a table of number characters rather than parsed, fields of used words are
// parsed with std::from_chars (locale-free, exact) and must be finite.
#include "data/text/glove.h"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numbers>

#include "engine/error.h"

namespace caption::text {

namespace {

// ---- the generator ----------------------------------------------------------------

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct SplitMix64 {
  uint64_t state;
  uint64_t next() { return mix64(state += kGolden); }
};

// ---- the reader -------------------------------------------------------------------

bool is_field_space(char c) { return c == ' ' || c == '\t'; }

// Characters that may appear in a number as GloVe files write them.
struct NumberChars {
  bool table[256] = {};
  constexpr NumberChars() {
    for (char c : std::string_view("0123456789+-.eE")) table[static_cast<unsigned char>(c)] = true;
  }
};
constexpr NumberChars kNumberChars;

bool looks_numeric(std::string_view field) {
  for (char c : field)
    if (!kNumberChars.table[static_cast<unsigned char>(c)]) return false;
  return true;
}

class GloveReader {
 public:
  GloveReader(const std::filesystem::path& file, const Vocabulary& vocab, GloveEmbedding& out)
      : name_(file.string()), vocab_(vocab), out_(out),
        filled_(static_cast<size_t>(vocab.size()), false) {}

  void read() {
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(name_.c_str(), "rb"), &std::fclose);
    CAPTION_CHECK(f != nullptr, name_, ": cannot open the GloVe file (", std::strerror(errno), ")");
    // 16 MiB blocks, or less for a small file.
    size_t block = size_t{16} << 20;
    std::error_code size_error;
    auto file_size = std::filesystem::file_size(name_, size_error);
    if (!size_error && file_size + 1 < block) block = std::max<size_t>(file_size + 1, 4096);
    std::vector<char> buf(block);
    size_t carry = 0;
    for (;;) {
      if (carry == buf.size()) buf.resize(buf.size() * 2);  // a line longer than the buffer
      size_t n = std::fread(buf.data() + carry, 1, buf.size() - carry, f.get());
      CAPTION_CHECK(!std::ferror(f.get()), name_, ": read error");
      size_t avail = carry + n;
      size_t start = 0;
      while (start < avail) {
        const void* nl = std::memchr(buf.data() + start, '\n', avail - start);
        if (nl == nullptr) break;
        size_t end = static_cast<size_t>(static_cast<const char*>(nl) - buf.data());
        line(std::string_view(buf.data() + start, end - start));
        start = end + 1;
      }
      carry = avail - start;
      if (n == 0) {
        if (carry > 0) line(std::string_view(buf.data() + start, carry));  // no final newline
        break;
      }
      std::memmove(buf.data(), buf.data() + start, carry);
    }
    CAPTION_CHECK(out_.dim > 0, name_, ": no word vectors in the file");
  }

  const std::vector<bool>& filled() const { return filled_; }

 private:
  void line(std::string_view text) {
    ++line_no_;
    while (!text.empty() && (is_field_space(text.back()) || text.back() == '\r'))
      text.remove_suffix(1);
    size_t i = 0;
    while (i < text.size() && is_field_space(text[i])) ++i;
    if (i == text.size()) return;  // blank line

    size_t word_start = i;
    while (i < text.size() && !is_field_space(text[i])) ++i;
    std::string_view word = text.substr(word_start, i - word_start);

    fields_.clear();
    while (i < text.size()) {
      while (i < text.size() && is_field_space(text[i])) ++i;
      size_t s = i;
      while (i < text.size() && !is_field_space(text[i])) ++i;
      if (i > s) fields_.push_back(text.substr(s, i - s));
    }

    if (out_.dim == 0) {
      CAPTION_CHECK(!fields_.empty(), name_, ":", line_no_, ": expected a word followed by its "
                    "vector, found only '", word, "'");
      out_.dim = static_cast<int64_t>(fields_.size());
      dim_line_ = line_no_;
      out_.weights.assign(static_cast<size_t>(out_.rows * out_.dim), 0.0f);
    }
    CAPTION_CHECK(static_cast<int64_t>(fields_.size()) == out_.dim, name_, ":", line_no_,
                  ": expected ", out_.dim, " numbers after the word '", word, "', found ",
                  fields_.size(), " (the dimension comes from line ", dim_line_, ")");
    ++out_.file_vectors;

    auto id = vocab_.find(word);
    bool wanted = id && *id >= kNumSpecialTokens && !filled_[static_cast<size_t>(*id)];
    if (!wanted) {
      for (size_t k = 0; k < fields_.size(); ++k)
        CAPTION_CHECK(looks_numeric(fields_[k]), name_, ":", line_no_, ": value ", k + 1,
                      " of '", word, "' is not a number: '", fields_[k], "'");
      return;
    }
    float* row = out_.weights.data() + static_cast<size_t>(*id) * static_cast<size_t>(out_.dim);
    for (size_t k = 0; k < fields_.size(); ++k) {
      std::string_view f = fields_[k];
      // from_chars takes no leading '+', which Python's float() (GloVe's writer) allows.
      if (f.size() > 1 && f[0] == '+' && f[1] != '-' && f[1] != '+') f.remove_prefix(1);
      float v = 0.0f;
      auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
      bool ok = ec == std::errc() && ptr == f.data() + f.size() && std::isfinite(v) &&
                looks_numeric(f);
      CAPTION_CHECK(ok, name_, ":", line_no_, ": value ", k + 1, " of '", word,
                    "' is not a finite number: '", fields_[k], "'");
      row[k] = v;
    }
    filled_[static_cast<size_t>(*id)] = true;
    ++out_.words_found;
  }

  std::string name_;
  const Vocabulary& vocab_;
  GloveEmbedding& out_;
  std::vector<bool> filled_;
  std::vector<std::string_view> fields_;
  size_t line_no_ = 0;
  size_t dim_line_ = 0;
};

}  // namespace

void fill_normal_row(uint64_t seed, uint64_t row, std::span<float> out) {
  SplitMix64 rng{mix64(mix64(seed) + row * kGolden + 1)};
  constexpr double kTwoPi = 2.0 * std::numbers::pi;
  for (size_t k = 0; k < out.size(); k += 2) {
    // u1 in (0, 1] so that log(u1) is finite; u2 in [0, 1).
    double u1 = static_cast<double>((rng.next() >> 11) + 1) * 0x1.0p-53;
    double u2 = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    out[k] = static_cast<float>(r * std::cos(kTwoPi * u2));
    if (k + 1 < out.size()) out[k + 1] = static_cast<float>(r * std::sin(kTwoPi * u2));
  }
}

GloveEmbedding load_glove_embedding(const std::filesystem::path& file, const Vocabulary& vocab,
                                    uint64_t seed) {
  GloveEmbedding out;
  out.rows = vocab.size();
  out.words_total = vocab.size() - kNumSpecialTokens;
  GloveReader reader(file, vocab, out);
  reader.read();

  const auto& filled = reader.filled();
  const auto dim = static_cast<size_t>(out.dim);
  for (TokenId id = 1; id < vocab.size(); ++id) {
    if (filled[static_cast<size_t>(id)]) continue;
    fill_normal_row(seed, static_cast<uint64_t>(id),
                    std::span<float>(out.weights.data() + static_cast<size_t>(id) * dim, dim));
    if (id >= kNumSpecialTokens && out.missing_examples.size() < kMaxMissingExamples)
      out.missing_examples.push_back(vocab.token(id));
  }
  // Row 0 (<pad>) stays zero from the allocation.
  return out;
}

std::string GloveEmbedding::coverage_report(const std::filesystem::path& file) const {
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * coverage());
  std::string s = str("GloVe ", file.filename().string(), " (", dim, "-d): ", words_found, "/",
                      words_total, " words found (", pct, "), ", words_total - words_found,
                      " drawn from N(0, 1)");
  if (!missing_examples.empty()) {
    s += "; missing include:";
    for (const auto& w : missing_examples) s += " " + w;
    if (static_cast<int64_t>(missing_examples.size()) < words_total - words_found) s += " ...";
  }
  return s;
}

}  // namespace caption::text
