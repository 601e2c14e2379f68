// Vocabulary building, encoding, decoding and its JSON file. Building counts into a
// hash map and then sorts (count descending, token ascending by bytes), so the ids
// never depend on hash order.
#include "data/text/vocab.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace caption::text {

namespace {

constexpr std::array<std::string_view, kNumSpecialTokens> kSpecials = {kPadToken, kSosToken,
                                                                       kEosToken, kUnkToken};

bool is_special(std::string_view token) {
  return std::find(kSpecials.begin(), kSpecials.end(), token) != kSpecials.end();
}

bool dropped(TokenId id, DecodeSpecials specials) {
  switch (specials) {
    case DecodeSpecials::Keep: return false;
    case DecodeSpecials::DropMarkers: return id == kPadId || id == kSosId || id == kEosId;
    case DecodeSpecials::DropAll: return id < kNumSpecialTokens;
  }
  return false;
}

}  // namespace

Vocabulary Vocabulary::build(std::span<const std::vector<std::string>> training_captions,
                             const VocabBuildOptions& options) {
  CAPTION_CHECK(options.min_word_freq >= 1, "vocabulary: min_word_freq must be >= 1, got ",
                options.min_word_freq);
  StringMap<int64_t> counts;
  for (const auto& caption : training_captions)
    for (const auto& word : caption) {
      if (word.empty() || is_special(word)) continue;
      auto it = counts.find(word);
      if (it == counts.end())
        counts.emplace(word, 1);
      else
        ++it->second;
    }
  std::vector<std::pair<std::string_view, int64_t>> kept;
  for (const auto& [word, count] : counts)
    if (count >= options.min_word_freq) kept.emplace_back(word, count);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first < b.first;  // string_view compares bytes as unsigned char
  });
  std::vector<std::string> tokens(kSpecials.begin(), kSpecials.end());
  tokens.reserve(kept.size() + kNumSpecialTokens);
  for (const auto& entry : kept) tokens.emplace_back(entry.first);
  return from_tokens(std::move(tokens), "vocabulary");
}

Vocabulary Vocabulary::from_tokens(std::vector<std::string> tokens, std::string_view source) {
  CAPTION_CHECK(tokens.size() >= kNumSpecialTokens, source, ": a vocabulary needs at least the ",
                kNumSpecialTokens, " special tokens, got ", tokens.size(), " tokens");
  CAPTION_CHECK(tokens.size() <= static_cast<size_t>(INT32_MAX), source,
                ": too many tokens (", tokens.size(), ")");
  for (TokenId i = 0; i < kNumSpecialTokens; ++i)
    CAPTION_CHECK(tokens[i] == kSpecials[i], source, ": token ", i, " must be '", kSpecials[i],
                  "', got '", tokens[i], "' (the specials are <pad> <sos> <eos> <unk>, in order)");
  Vocabulary v;
  v.ids_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    CAPTION_CHECK(!tokens[i].empty(), source, ": token ", i, " is empty");
    auto [it, inserted] = v.ids_.emplace(tokens[i], static_cast<TokenId>(i));
    CAPTION_CHECK(inserted, source, ": token '", tokens[i], "' appears twice (ids ", it->second,
                  " and ", i, ")");
  }
  v.tokens_ = std::move(tokens);
  return v;
}

Vocabulary Vocabulary::from_json(const nlohmann::json& j, std::string_view source) {
  CAPTION_CHECK(j.is_array(), source, ": a vocabulary must be a JSON array of tokens, got ",
                j.type_name());
  std::vector<std::string> tokens;
  tokens.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    CAPTION_CHECK(j[i].is_string(), source, ": token ", i, " must be a string, got ",
                  j[i].type_name());
    tokens.push_back(j[i].get<std::string>());
  }
  return from_tokens(std::move(tokens), source);
}

Vocabulary Vocabulary::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  CAPTION_CHECK(in.is_open(), path.string(), ": cannot open the vocabulary file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    // A parse_error's message says where and what; out_of_range is a number too large.
    throw Error(str(path.string(), ": not valid JSON: ", e.what()));
  }
  return from_json(j, path.string());
}

nlohmann::json Vocabulary::to_json() const { return nlohmann::json(tokens_); }

void Vocabulary::save(const std::filesystem::path& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  CAPTION_CHECK(out.is_open(), path.string(), ": cannot write the vocabulary file");
  // One token a line keeps the file readable and diff-able.
  out << "[\n";
  for (size_t i = 0; i < tokens_.size(); ++i)
    out << "  " << nlohmann::json(tokens_[i]).dump() << (i + 1 < tokens_.size() ? ",\n" : "\n");
  out << "]\n";
  out.flush();
  CAPTION_CHECK(out.good(), path.string(), ": error while writing the vocabulary file");
}

const std::string& Vocabulary::token(TokenId id) const {
  CAPTION_CHECK(id >= 0 && id < size(), "vocabulary: token id ", id, " is outside [0, ", size(),
                ")");
  return tokens_[static_cast<size_t>(id)];
}

std::optional<TokenId> Vocabulary::find(std::string_view token) const {
  auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

TokenId Vocabulary::id(std::string_view word) const { return find(word).value_or(kUnkId); }

std::vector<TokenId> Vocabulary::encode(std::span<const std::string> words) const {
  std::vector<TokenId> ids;
  ids.reserve(words.size());
  for (const auto& w : words) ids.push_back(id(w));
  return ids;
}

std::optional<std::vector<TokenId>> Vocabulary::encode_caption(
    std::span<const std::string> words, const CaptionEncodeOptions& options) const {
  CAPTION_CHECK(options.max_caption_len >= 1, "vocabulary: max_caption_len must be >= 1, got ",
                options.max_caption_len);
  size_t n = words.size();
  if (n > static_cast<size_t>(options.max_caption_len)) {
    if (options.long_captions == LongCaptionPolicy::Drop) return std::nullopt;
    n = static_cast<size_t>(options.max_caption_len);
  }
  std::vector<TokenId> ids;
  ids.reserve(n + 2);
  ids.push_back(kSosId);
  for (size_t i = 0; i < n; ++i) ids.push_back(id(words[i]));
  ids.push_back(kEosId);
  return ids;
}

EncodedCaptions Vocabulary::encode_captions(std::span<const std::vector<std::string>> captions,
                                            const CaptionEncodeOptions& options) const {
  EncodedCaptions out;
  out.captions.reserve(captions.size());
  out.source_index.reserve(captions.size());
  for (size_t i = 0; i < captions.size(); ++i) {
    const auto& words = captions[i];
    bool too_long = words.size() > static_cast<size_t>(std::max<int64_t>(options.max_caption_len, 0));
    auto ids = encode_caption(words, options);
    if (!ids) {
      ++out.dropped;
      continue;
    }
    if (too_long) ++out.truncated;
    if (words.empty()) ++out.empty;
    out.words += ids->size() - 2;
    for (size_t k = 1; k + 1 < ids->size(); ++k) out.unknown_words += (*ids)[k] == kUnkId;
    out.captions.push_back(std::move(*ids));
    out.source_index.push_back(i);
  }
  return out;
}

std::vector<std::string> Vocabulary::decode(std::span<const TokenId> ids,
                                            DecodeSpecials specials) const {
  std::vector<std::string> words;
  words.reserve(ids.size());
  for (TokenId id : ids) {
    const std::string& t = token(id);  // checks the range first
    if (!dropped(id, specials)) words.push_back(t);
  }
  return words;
}

std::string Vocabulary::decode_text(std::span<const TokenId> ids, DecodeSpecials specials) const {
  std::string text;
  for (const auto& w : decode(ids, specials)) {
    if (!text.empty()) text += ' ';
    text += w;
  }
  return text;
}

}  // namespace caption::text
