// Port of nltk/stem/porter.py (NLTK 3.8, NLTK_EXTENSIONS mode), step by step.
//
// The algorithm is written once as a template over the string type: ASCII words (all
// captions after the default normalisation) run on std::string directly; other words
// are decoded to code points (std::u32string) so that every length and position test
// counts characters as Python does, then encoded back. Invalid UTF-8 bytes become
// U+DC80..U+DCFF on decoding and raw bytes again on encoding (Python's
// "surrogateescape"), so any byte string survives the round trip.
//
// Where NLTK's rule lists carry lambdas, the conditions here are an enum evaluated by
// one function; the rule tables keep NLTK's order, which matters: a rule list stops at
// the first suffix that matches, whether or not its condition holds.
#include "data/text/porter.h"

#include <array>
#include <cstdint>

#include "data/text/strings.h"

namespace caption::text {

namespace {

enum class Cond {
  Always,           // no condition
  MeasurePositive,  // m(stem) > 0
  MeasureAbove1,    // m(stem) > 1
  IonStem,          // m(stem) > 1 and stem ends in s or t (step 4)
  LogiStem,         // m(word minus its last 3 letters) > 0 (NLTK's 'logi' rule)
  DoubleL,          // m(word minus its last letter) > 1 (step 5b)
  YAfterConsonant,  // len(stem) > 1 and stem's last letter is a consonant (step 1c)
};

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond cond;
};

template <typename S>
struct Porter {
  using C = typename S::value_type;

  static bool is_vowel_letter(C c) {
    return c == C('a') || c == C('e') || c == C('i') || c == C('o') || c == C('u');
  }

  // NLTK's recursive definition (y is a consonant at the start or after a vowel),
  // unrolled into a loop so that a long run of y's cannot exhaust the stack.
  static bool is_consonant(const S& w, size_t i) {
    bool flip = false;
    for (;;) {
      C c = w[i];
      bool r;
      if (is_vowel_letter(c)) {
        r = false;
      } else if (c != C('y') || i == 0) {
        r = true;
      } else {
        flip = !flip;
        --i;
        continue;
      }
      return flip ? !r : r;
    }
  }

  // m: the number of vowel->consonant transitions in the c/v pattern.
  static int measure(const S& stem) {
    int m = 0;
    bool prev_cons = true;  // so that a leading consonant counts nothing
    bool have_prev = false;
    for (size_t i = 0; i < stem.size(); ++i) {
      C c = stem[i];
      bool cons;
      if (is_vowel_letter(c)) {
        cons = false;
      } else if (c == C('y')) {
        cons = (i == 0) ? true : !prev_cons;
      } else {
        cons = true;
      }
      if (have_prev && !prev_cons && cons) ++m;
      prev_cons = cons;
      have_prev = true;
    }
    return m;
  }

  // One pass (calling is_consonant per position would be quadratic on runs of y).
  static bool contains_vowel(const S& stem) {
    bool prev_cons = true;
    for (size_t i = 0; i < stem.size(); ++i) {
      C c = stem[i];
      bool cons = is_vowel_letter(c) ? false : c == C('y') ? (i == 0 || !prev_cons) : true;
      if (!cons) return true;
      prev_cons = cons;
    }
    return false;
  }

  static bool ends_double_consonant(const S& w) {
    size_t n = w.size();
    return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
  }

  // *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also counts a
  // two-letter vowel-consonant word.
  static bool ends_cvc(const S& w) {
    size_t n = w.size();
    if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) &&
        is_consonant(w, n - 1) && w[n - 1] != C('w') && w[n - 1] != C('x') &&
        w[n - 1] != C('y'))
      return true;
    return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
  }

  static bool ends_with(const S& w, std::string_view suffix) {
    if (suffix.size() > w.size()) return false;
    size_t off = w.size() - suffix.size();
    for (size_t i = 0; i < suffix.size(); ++i)
      if (w[off + i] != C(static_cast<unsigned char>(suffix[i]))) return false;
    return true;
  }

  static S cut(const S& w, size_t n) { return S(w.begin(), w.end() - static_cast<std::ptrdiff_t>(n)); }

  static S append(S w, std::string_view tail) {
    for (char ch : tail) w.push_back(C(static_cast<unsigned char>(ch)));
    return w;
  }

  static bool holds(Cond cond, const S& stem, const S& word) {
    switch (cond) {
      case Cond::Always: return true;
      case Cond::MeasurePositive: return measure(stem) > 0;
      case Cond::MeasureAbove1: return measure(stem) > 1;
      case Cond::IonStem:
        return measure(stem) > 1 && (stem.back() == C('s') || stem.back() == C('t'));
      case Cond::LogiStem: return word.size() >= 3 && measure(cut(word, 3)) > 0;
      case Cond::DoubleL: return measure(cut(word, 1)) > 1;
      case Cond::YAfterConsonant:
        return stem.size() > 1 && is_consonant(stem, stem.size() - 1);
    }
    return false;
  }

  // NLTK's _apply_rule_list for rules with plain suffixes: the first rule whose suffix
  // matches decides, applying its replacement only when its condition holds.
  template <size_t N>
  static S apply_rules(const S& word, const std::array<Rule, N>& rules) {
    for (const Rule& rule : rules) {
      if (!ends_with(word, rule.suffix)) continue;
      S stem = cut(word, rule.suffix.size());
      if (holds(rule.cond, stem, word)) return append(std::move(stem), rule.replacement);
      return word;
    }
    return word;
  }

  static S step1a(const S& w) {
    if (ends_with(w, "ies") && w.size() == 4) return append(cut(w, 3), "ie");
    static constexpr std::array<Rule, 4> rules = {{
        {"sses", "ss", Cond::Always},
        {"ies", "i", Cond::Always},
        {"ss", "ss", Cond::Always},
        {"s", "", Cond::Always},
    }};
    return apply_rules(w, rules);
  }

  static S step1b(const S& w) {
    if (ends_with(w, "ied")) return append(cut(w, 3), w.size() == 4 ? "ie" : "i");
    if (ends_with(w, "eed")) {
      S stem = cut(w, 3);
      return measure(stem) > 0 ? append(std::move(stem), "ee") : w;
    }
    S s;
    bool matched = false;
    for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
      if (ends_with(w, suffix)) {
        s = cut(w, suffix.size());
        if (contains_vowel(s)) {
          matched = true;
          break;
        }
      }
    }
    if (!matched) return w;
    // The follow-up rules, in NLTK's order; the first whose suffix matches decides.
    if (ends_with(s, "at")) return append(cut(s, 2), "ate");
    if (ends_with(s, "bl")) return append(cut(s, 2), "ble");
    if (ends_with(s, "iz")) return append(cut(s, 2), "ize");
    if (ends_double_consonant(s)) {
      C last = s.back();
      if (last != C('l') && last != C('s') && last != C('z')) return cut(s, 1);
      return s;
    }
    if (measure(s) == 1 && ends_cvc(s)) return append(std::move(s), "e");
    return s;
  }

  static S step1c(const S& w) {
    static constexpr std::array<Rule, 1> rules = {{{"y", "i", Cond::YAfterConsonant}}};
    return apply_rules(w, rules);
  }

  static S step2(const S& w) {
    if (ends_with(w, "alli") && measure(cut(w, 4)) > 0) return step2(append(cut(w, 4), "al"));
    static constexpr std::array<Rule, 22> rules = {{
        {"ational", "ate", Cond::MeasurePositive},
        {"tional", "tion", Cond::MeasurePositive},
        {"enci", "ence", Cond::MeasurePositive},
        {"anci", "ance", Cond::MeasurePositive},
        {"izer", "ize", Cond::MeasurePositive},
        {"bli", "ble", Cond::MeasurePositive},
        {"alli", "al", Cond::MeasurePositive},
        {"entli", "ent", Cond::MeasurePositive},
        {"eli", "e", Cond::MeasurePositive},
        {"ousli", "ous", Cond::MeasurePositive},
        {"ization", "ize", Cond::MeasurePositive},
        {"ation", "ate", Cond::MeasurePositive},
        {"ator", "ate", Cond::MeasurePositive},
        {"alism", "al", Cond::MeasurePositive},
        {"iveness", "ive", Cond::MeasurePositive},
        {"fulness", "ful", Cond::MeasurePositive},
        {"ousness", "ous", Cond::MeasurePositive},
        {"aliti", "al", Cond::MeasurePositive},
        {"iviti", "ive", Cond::MeasurePositive},
        {"biliti", "ble", Cond::MeasurePositive},
        {"fulli", "ful", Cond::MeasurePositive},
        {"logi", "log", Cond::LogiStem},
    }};
    return apply_rules(w, rules);
  }

  static S step3(const S& w) {
    static constexpr std::array<Rule, 7> rules = {{
        {"icate", "ic", Cond::MeasurePositive},
        {"ative", "", Cond::MeasurePositive},
        {"alize", "al", Cond::MeasurePositive},
        {"iciti", "ic", Cond::MeasurePositive},
        {"ical", "ic", Cond::MeasurePositive},
        {"ful", "", Cond::MeasurePositive},
        {"ness", "", Cond::MeasurePositive},
    }};
    return apply_rules(w, rules);
  }

  static S step4(const S& w) {
    static constexpr std::array<Rule, 19> rules = {{
        {"al", "", Cond::MeasureAbove1},    {"ance", "", Cond::MeasureAbove1},
        {"ence", "", Cond::MeasureAbove1},  {"er", "", Cond::MeasureAbove1},
        {"ic", "", Cond::MeasureAbove1},    {"able", "", Cond::MeasureAbove1},
        {"ible", "", Cond::MeasureAbove1},  {"ant", "", Cond::MeasureAbove1},
        {"ement", "", Cond::MeasureAbove1}, {"ment", "", Cond::MeasureAbove1},
        {"ent", "", Cond::MeasureAbove1},   {"ion", "", Cond::IonStem},
        {"ou", "", Cond::MeasureAbove1},    {"ism", "", Cond::MeasureAbove1},
        {"ate", "", Cond::MeasureAbove1},   {"iti", "", Cond::MeasureAbove1},
        {"ous", "", Cond::MeasureAbove1},   {"ive", "", Cond::MeasureAbove1},
        {"ize", "", Cond::MeasureAbove1},
    }};
    return apply_rules(w, rules);
  }

  // Two rules on the same suffix, both tried (NLTK does not use the rule list here).
  static S step5a(const S& w) {
    if (ends_with(w, "e")) {
      S stem = cut(w, 1);
      int m = measure(stem);
      if (m > 1) return stem;
      if (m == 1 && !ends_cvc(stem)) return stem;
    }
    return w;
  }

  static S step5b(const S& w) {
    static constexpr std::array<Rule, 1> rules = {{{"ll", "l", Cond::DoubleL}}};
    return apply_rules(w, rules);
  }

  static S stem(const S& word) {
    S lower = word;
    for (C& c : lower)
      if (c >= C('A') && c <= C('Z')) c = C(c - C('A') + C('a'));
    // NLTK looks the irregular forms up with the word as given, then maps the lowered
    // word; every entry is lowercase, so a hit means the two are equal.
    if (const char* irregular = irregular_form(word)) return append(S(), irregular);
    if (word.size() <= 2) return lower;
    S s = step1a(lower);
    s = step1b(s);
    s = step1c(s);
    s = step2(s);
    s = step3(s);
    s = step4(s);
    s = step5a(s);
    s = step5b(s);
    return s;
  }

  static const char* irregular_form(const S& word) {
    static constexpr std::array<std::pair<std::string_view, const char*>, 16> pool = {{
        {"sky", "sky"},          {"skies", "sky"},        {"dying", "die"},
        {"lying", "lie"},        {"tying", "tie"},        {"news", "news"},
        {"innings", "inning"},   {"inning", "inning"},    {"outings", "outing"},
        {"outing", "outing"},    {"cannings", "canning"}, {"canning", "canning"},
        {"howe", "howe"},        {"proceed", "proceed"},  {"exceed", "exceed"},
        {"succeed", "succeed"},
    }};
    for (const auto& [form, stem] : pool)
      if (form.size() == word.size() && ends_with(word, form)) return stem;
    return nullptr;
  }
};

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      unsigned char cb = static_cast<unsigned char>(s[i + k]);
      ok = (cb & 0xC0) == 0x80;
      cp = (cp << 6) | (cb & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF, as Python does.
    static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < kMin[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) ok = false;
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0xDC00 + b);  // surrogateescape
      i += 1;
    }
  }
  return out;
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (char32_t cp : s) {
    if (cp >= 0xDC80 && cp <= 0xDCFF) {
      out.push_back(static_cast<char>(cp - 0xDC00));
    } else if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  if (is_ascii(word)) return Porter<std::string>::stem(std::string(word));
  return encode_utf8(Porter<std::u32string>::stem(decode_utf8(word)));
}

}  // namespace caption::text
