// GloVe word vectors -> an initial embedding matrix for a vocabulary.
//
// The text format is one word a line followed by D numbers, separated by spaces (tabs
// are accepted too). D is taken from the first line; every later line must carry
// exactly D numbers, and a line that does not is an error naming the file and line.
// Only the vectors of words in the vocabulary are parsed and kept; the other lines
// (most of a 400k-line file) are only checked for their field count and for
// characters that cannot be part of a number, which keeps a 50-d file well under a
// second. A word that appears twice keeps its first vector. Lines that are empty or
// only whitespace are skipped.
//
// The matrix is [V, D], row-major, row = token id:
//   - words (ids >= 4) found in the file: their vector;
//   - other words and <sos>, <eos>, <unk>: drawn from N(0, 1) (MODEL_SPEC.md: "rows of
//     words missing from GloVe drawn from N(0, 1) with the run's seed");
//   - <pad>: zero.
// The specials are never looked up in the file: GloVe has no vectors for them.
//
// Random rows come from a generator written here, not std:: distributions (whose
// output differs between standard libraries): SplitMix64 (Steele, Lea, Flood 2014),
// one stream per row seeded from (seed, row id), turned into normals by Box-Muller in
// double precision and rounded to float. A row therefore depends only on the seed and
// its own id, not on which other words were found.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "data/text/vocab.h"

namespace caption::text {

struct GloveEmbedding {
  std::vector<float> weights;  // [rows * dim], row-major, row = token id
  int64_t rows = 0;            // the vocabulary size V
  int64_t dim = 0;             // D, from the file
  int64_t words_found = 0;     // words (ids >= 4) whose row came from the file
  int64_t words_total = 0;     // words (ids >= 4)
  int64_t file_vectors = 0;    // vector lines read from the file
  // The first few missing words in id order (the most frequent first), for a report.
  std::vector<std::string> missing_examples;

  double coverage() const {
    return words_total == 0 ? 1.0 : static_cast<double>(words_found) / static_cast<double>(words_total);
  }
  // "GloVe glove.6B.50d.txt: 9487/10000 words found (94.9%), 513 drawn from N(0, 1);
  //  missing include: ..." -- one line, at most kMaxMissingExamples words listed.
  std::string coverage_report(const std::filesystem::path& file) const;
};

inline constexpr size_t kMaxMissingExamples = 10;

// Reads `file` and builds the embedding matrix for `vocab`. Throws caption::Error
// naming the file (and line) on a missing file, a malformed line, a dimension that
// changes, or a file without vectors.
GloveEmbedding load_glove_embedding(const std::filesystem::path& file, const Vocabulary& vocab,
                                    uint64_t seed);

// Fills `out` with N(0, 1) draws of stream `row` of `seed` (the rows of missing words).
void fill_normal_row(uint64_t seed, uint64_t row, std::span<float> out);

}  // namespace caption::text
