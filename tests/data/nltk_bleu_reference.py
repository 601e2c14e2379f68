#!/usr/bin/python3
"""NLTK corpus_bleu for the differential test of data/metrics/bleu (metrics_test.cpp).

Input (one file, whitespace-separated tokens, written by the C++ test):
    W <w1> <w2> ...           one line per weight vector (floats printed with %.17g)
    C <number of samples>     starts a corpus
    S <number of references>  starts a sample; then:
    H <tokens...>             the hypothesis (may have no tokens)
    R <tokens...>             one line per reference (may have no tokens)
Output: one line per corpus, the corpus_bleu value for every weight vector in order,
written with repr() so that the C++ side parses the exact double. NLTK's int 0 (no
unigram match) prints as 0.

Needs Debian's /usr/bin/python3 with nltk; exits with status 3 and a message on stderr
when nltk is missing, so the test can skip instead of failing.
"""
import sys
import warnings

# method0 warns for every zero-count order (expected here); keep stdout/stderr clean.
warnings.simplefilter("ignore")

try:
    from nltk.translate import bleu_score
    from nltk.translate.bleu_score import corpus_bleu
except ImportError as error:  # pragma: no cover - depends on the machine
    sys.stderr.write(f"nltk is not importable: {error}\n")
    sys.exit(3)


def keep_unnormalised_fractions():
    """NLTK 3.8 (Debian 12) builds its modified precisions as
    Fraction(numerator, denominator, _normalize=False) and sums the raw numerators and
    denominators over the corpus. Python 3.12 removed that private keyword, so on a
    newer interpreter (the GPU machine's) the call raises TypeError. This stand-in keeps
    the same raw numerator and denominator, which is exactly what NLTK relies on, and
    is installed only where the keyword is gone; the arithmetic stays NLTK's own."""
    import fractions

    try:
        fractions.Fraction(2, 4, _normalize=False)
        return  # the interpreter still has the keyword: nothing to do
    except TypeError:
        pass

    class RawFraction(fractions.Fraction):
        def __new__(cls, numerator=0, denominator=None, *, _normalize=True):
            value = super().__new__(cls, numerator, denominator)
            if not _normalize:
                value._numerator, value._denominator = numerator, denominator
            return value

    bleu_score.Fraction = RawFraction


keep_unnormalised_fractions()


def parse(path):
    weights, corpora = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields:
                continue
            tag, rest = fields[0], fields[1:]
            if tag == "W":
                weights.append(tuple(float(w) for w in rest))
            elif tag == "C":
                corpora.append(([], []))  # (list_of_references, hypotheses)
            elif tag == "S":
                corpora[-1][0].append([])
            elif tag == "H":
                corpora[-1][1].append(rest)
            elif tag == "R":
                corpora[-1][0][-1].append(rest)
            else:
                raise ValueError(f"unknown line tag {tag!r}")
    return weights, corpora


def main():
    weights, corpora = parse(sys.argv[1])
    out = []
    for references, hypotheses in corpora:
        scores = [corpus_bleu(references, hypotheses, weights=w) for w in weights]
        out.append(" ".join(repr(float(s)) if s != 0 else "0" for s in scores))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
