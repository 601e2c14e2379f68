// WordNet database reading and NLTK's morphy (nltk/corpus/reader/wordnet.py, 3.8).
//
// morphy, as NLTK writes it:
//   0. if the word is in the exception list of the part of speech, the answer is
//      filter([word] + its base forms), even when that is empty (no rules are tried);
//   1. apply every substitution rule whose suffix matches, once, to the word;
//   2. answer filter([word] + those forms) if it is not empty;
//   3. otherwise keep applying the rules to the last forms until a filtered set is not
//      empty or no rule applies.
// filter keeps the forms that are lemmas of the part of speech, first occurrence first.
// The loop ends because every rule shortens a form, except noun "men" -> "man", whose
// result no rule matches. Duplicate forms are removed as they are made: that changes
// no answer (filter keeps first occurrences) and bounds the work on odd inputs.
#include "data/text/wordnet.h"

#include <fstream>
#include <span>
#include <sstream>

#include "engine/error.h"

namespace caption::text {

namespace {

struct Substitution {
  std::string_view old_suffix;
  std::string_view new_suffix;
};

constexpr Substitution kNoun[] = {{"s", ""},     {"ses", "s"},   {"ves", "f"},
                                  {"xes", "x"},  {"zes", "z"},   {"ches", "ch"},
                                  {"shes", "sh"}, {"men", "man"}, {"ies", "y"}};
constexpr Substitution kVerb[] = {{"s", ""},   {"ies", "y"}, {"es", "e"},  {"es", ""},
                                  {"ed", "e"}, {"ed", ""},   {"ing", "e"}, {"ing", ""}};
constexpr Substitution kAdj[] = {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}};

std::span<const Substitution> substitutions(PartOfSpeech pos) {
  switch (pos) {
    case PartOfSpeech::Noun: return kNoun;
    case PartOfSpeech::Verb: return kVerb;
    case PartOfSpeech::Adjective: return kAdj;
    case PartOfSpeech::Adverb: return {};
  }
  return {};
}

// WordNet's file suffixes, indexed by PartOfSpeech.
constexpr std::array<std::string_view, 4> kFileSuffix = {"noun", "verb", "adj", "adv"};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  CAPTION_CHECK(in.is_open(), "WordNet database: cannot open ", path.string(),
                " (install Debian's wordnet-base, or point the lemmatiser at a directory"
                " holding the WordNet 3.0 dict files)");
  std::ostringstream ss;
  ss << in.rdbuf();
  CAPTION_CHECK(!in.bad(), "WordNet database: cannot read ", path.string());
  return std::move(ss).str();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

// Splits a line on whitespace, as Python's str.split() does for ASCII text.
void split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
}

// Calls fn(line, line_number) for each line of `text`.
template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    fn(text.substr(pos, end - pos), ++line_no);
    pos = end + 1;
  }
}

}  // namespace

std::filesystem::path default_wordnet_dir() { return "/usr/share/wordnet"; }

WordNetLemmatizer::WordNetLemmatizer(const std::filesystem::path& dir) : dir_(dir) {
  std::vector<std::string_view> fields;
  for (size_t p = 0; p < 4; ++p) {
    auto index_path = dir / ("index." + std::string(kFileSuffix[p]));
    std::string index = read_file(index_path);
    for_each_line(index, [&](std::string_view line, size_t line_no) {
      // The license header lines start with a space.
      if (line.empty() || line.front() == ' ') return;
      split_fields(line, fields);
      if (fields.empty()) return;
      CAPTION_CHECK(fields.size() >= 2, index_path.string(), ":", line_no,
                    ": malformed index line (expected a lemma and a part of speech)");
      // NLTK files the lemma under the part of speech the line names ("s" files under
      // the adjective, which NLTK 3.8 also answers for satellites).
      PartOfSpeech pos = parse_pos(fields[1], str(index_path.string(), ":", line_no));
      pos_[static_cast<size_t>(pos)].lemmas.emplace(fields[0]);
    });

    auto exc_path = dir / (std::string(kFileSuffix[p]) + ".exc");
    std::string exc = read_file(exc_path);
    auto& exceptions = pos_[p].exceptions;
    for_each_line(exc, [&](std::string_view line, size_t) {
      split_fields(line, fields);
      if (fields.empty()) return;
      // A later line for the same form replaces an earlier one, as in NLTK's dict.
      auto& bases = exceptions[std::string(fields[0])];
      bases.assign(fields.begin() + 1, fields.end());
    });
  }
}

bool WordNetLemmatizer::has_lemma(std::string_view lemma, PartOfSpeech pos) const {
  const auto& lemmas = data(pos).lemmas;
  return lemmas.find(lemma) != lemmas.end();
}

std::vector<std::string> WordNetLemmatizer::morphy(std::string_view word,
                                                   PartOfSpeech pos) const {
  const PosData& d = data(pos);
  auto rules = substitutions(pos);

  auto filter = [&](const std::vector<std::string>& forms) {
    std::vector<std::string> result;
    for (const auto& form : forms) {
      if (d.lemmas.find(form) == d.lemmas.end()) continue;
      bool seen = false;
      for (const auto& r : result) seen = seen || r == form;
      if (!seen) result.push_back(form);
    }
    return result;
  };
  auto apply_rules = [&](const std::vector<std::string>& forms) {
    std::vector<std::string> out;
    for (const auto& form : forms) {
      std::string_view f = form;
      for (const auto& rule : rules) {
        if (!f.ends_with(rule.old_suffix)) continue;
        std::string next(f.substr(0, f.size() - rule.old_suffix.size()));
        next += rule.new_suffix;
        bool seen = false;
        for (const auto& o : out) seen = seen || o == next;
        if (!seen) out.push_back(std::move(next));
      }
    }
    return out;
  };

  // 0. The exception list decides alone when it names the word.
  if (auto it = d.exceptions.find(word); it != d.exceptions.end()) {
    std::vector<std::string> forms{std::string(word)};
    forms.insert(forms.end(), it->second.begin(), it->second.end());
    return filter(forms);
  }
  // 1-2. One round of rules; the word itself is a candidate too.
  std::vector<std::string> forms = apply_rules({std::string(word)});
  std::vector<std::string> first{std::string(word)};
  first.insert(first.end(), forms.begin(), forms.end());
  if (auto results = filter(first); !results.empty()) return results;
  // 3. More rounds until something is a lemma or nothing changes.
  while (!forms.empty()) {
    forms = apply_rules(forms);
    if (auto results = filter(forms); !results.empty()) return results;
  }
  return {};
}

std::string WordNetLemmatizer::lemmatize(std::string_view word, PartOfSpeech pos) const {
  auto lemmas = morphy(word, pos);
  if (lemmas.empty()) return std::string(word);
  // Python's min(lemmas, key=len): the first of the shortest, length in code points.
  size_t best = 0;
  for (size_t i = 1; i < lemmas.size(); ++i)
    if (utf8_length(lemmas[i]) < utf8_length(lemmas[best])) best = i;
  return lemmas[best];
}

}  // namespace caption::text
