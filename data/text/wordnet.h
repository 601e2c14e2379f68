// WordNet lemmatiser: NLTK 3.8's `WordNetLemmatizer().lemmatize(word, pos)`, which is
// `wn._morphy(word, pos, check_exceptions=True)` followed by "the shortest candidate
// (the first of equal length), or the word itself when there is none".
//
// It reads the WordNet database files directly (index.{noun,verb,adj,adv} for the
// lemmas that exist, {noun,verb,adj,adv}.exc for the irregular forms) from a directory,
// by default Debian's /usr/share/wordnet (package wordnet-base, WordNet 3.0). Only the
// lemma names are kept; synsets are never needed for morphy. Loading the four parts of
// speech takes a fraction of a second; a lemmatiser is built once and then shared
// (lemmatize is const and thread-safe).
//
// As in NLTK, lookups are exact and case-sensitive (WordNet's lemmas are lowercase, so
// "Dogs" stays "Dogs"), and the adjective part of speech includes satellites.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "data/text/options.h"
#include "data/text/strings.h"

namespace caption::text {

// /usr/share/wordnet.
std::filesystem::path default_wordnet_dir();

class WordNetLemmatizer {
 public:
  // Loads the index and exception files of all four parts of speech from `dir`. Throws
  // caption::Error naming the path of a missing or unreadable file, or the file and
  // line of a malformed index line.
  explicit WordNetLemmatizer(const std::filesystem::path& dir = default_wordnet_dir());

  // NLTK's lemmatize(word, pos).
  std::string lemmatize(std::string_view word, PartOfSpeech pos = PartOfSpeech::Noun) const;

  // NLTK's _morphy(word, pos, check_exceptions=True): every candidate lemma, in NLTK's
  // order, without duplicates; empty when WordNet knows none.
  std::vector<std::string> morphy(std::string_view word, PartOfSpeech pos) const;

  // Whether `lemma` is in the index of `pos`.
  bool has_lemma(std::string_view lemma, PartOfSpeech pos) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct PosData {
    StringSet lemmas;                                 // index.<pos> lemma names
    StringMap<std::vector<std::string>> exceptions;   // <pos>.exc: form -> base forms
  };
  const PosData& data(PartOfSpeech pos) const { return pos_[static_cast<size_t>(pos)]; }

  std::filesystem::path dir_;
  std::array<PosData, 4> pos_;  // indexed by PartOfSpeech
};

}  // namespace caption::text
