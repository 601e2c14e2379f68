// The vocabulary: token <-> id, built from the training split (MODEL_SPEC.md section 1).
//
// Ids 0-3 are the special tokens <pad>, <sos>, <eos>, <unk>; words follow from id 4 in
// descending training count, ties broken by byte order, so the same captions always
// give the same ids (no dependence on hash order or input order). Only words counted
// at least `min_word_freq` times are kept; every other word encodes as <unk>.
//
// On disk (and in a checkpoint's `vocab` metadata) a vocabulary is a JSON array of its
// tokens in id order. Loading checks that the first four are the specials in order,
// that every entry is a non-empty string and that no token repeats.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/text/strings.h"

namespace caption::text {

using TokenId = int32_t;

inline constexpr TokenId kPadId = 0;
inline constexpr TokenId kSosId = 1;
inline constexpr TokenId kEosId = 2;
inline constexpr TokenId kUnkId = 3;
inline constexpr TokenId kNumSpecialTokens = 4;
inline constexpr std::string_view kPadToken = "<pad>";
inline constexpr std::string_view kSosToken = "<sos>";
inline constexpr std::string_view kEosToken = "<eos>";
inline constexpr std::string_view kUnkToken = "<unk>";

struct VocabBuildOptions {
  int64_t min_word_freq = 5;  // keep words counted at least this often (>= 1)
};

// What decode does with special tokens.
enum class DecodeSpecials {
  Keep,         // every id becomes its token
  DropMarkers,  // drop <pad>, <sos>, <eos>; keep <unk> (it stands for a word)
  DropAll,      // drop all four
};

// What happens to a training caption longer than max_caption_len words.
enum class LongCaptionPolicy { Truncate, Drop };

struct CaptionEncodeOptions {
  int64_t max_caption_len = 50;  // words, not counting <sos> and <eos> (>= 1)
  LongCaptionPolicy long_captions = LongCaptionPolicy::Truncate;
};

// Training captions encoded as <sos> w1 .. wn <eos>, with what happened on the way.
struct EncodedCaptions {
  std::vector<std::vector<TokenId>> captions;
  std::vector<size_t> source_index;  // captions[i] came from input caption source_index[i]
  size_t truncated = 0;              // longer than max_caption_len, cut (Truncate)
  size_t dropped = 0;                // longer than max_caption_len, left out (Drop)
  size_t empty = 0;                  // no words at all (kept as <sos> <eos>)
  size_t words = 0;                  // words encoded (after truncation)
  size_t unknown_words = 0;          // of which encoded as <unk>
};

class Vocabulary {
 public:
  // Counts the words of tokenised training captions and keeps the frequent ones.
  // Tokens spelled like a special token ("<unk>") are never made words.
  static Vocabulary build(std::span<const std::vector<std::string>> training_captions,
                          const VocabBuildOptions& options = {});

  // Tokens in id order; validated as a loaded file is. `source` names the input in
  // messages (a file path, "checkpoint x: vocab").
  static Vocabulary from_tokens(std::vector<std::string> tokens, std::string_view source);
  static Vocabulary from_json(const nlohmann::json& j, std::string_view source);
  static Vocabulary load(const std::filesystem::path& path);

  nlohmann::json to_json() const;
  // Writes the JSON array, one token a line; errors name the path.
  void save(const std::filesystem::path& path) const;

  TokenId size() const { return static_cast<TokenId>(tokens_.size()); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  // The token of an id; throws caption::Error for an id outside [0, size()).
  const std::string& token(TokenId id) const;
  // The id of a token, or nullopt when it is not in the vocabulary.
  std::optional<TokenId> find(std::string_view token) const;
  // The id of a word, <unk> when it is not in the vocabulary.
  TokenId id(std::string_view word) const;

  std::vector<TokenId> encode(std::span<const std::string> words) const;
  // One training caption as <sos> w1 .. wn <eos>; nullopt when the caption is too long
  // and the policy is Drop.
  std::optional<std::vector<TokenId>> encode_caption(std::span<const std::string> words,
                                                     const CaptionEncodeOptions& options) const;
  EncodedCaptions encode_captions(std::span<const std::vector<std::string>> captions,
                                  const CaptionEncodeOptions& options) const;

  // Ids back to tokens; throws caption::Error for an id outside the vocabulary.
  std::vector<std::string> decode(std::span<const TokenId> ids, DecodeSpecials specials) const;
  // decode joined with single spaces.
  std::string decode_text(std::span<const TokenId> ids, DecodeSpecials specials) const;

  bool operator==(const Vocabulary& other) const { return tokens_ == other.tokens_; }

 private:
  Vocabulary() = default;
  std::vector<std::string> tokens_;
  StringMap<TokenId> ids_;
};

}  // namespace caption::text
