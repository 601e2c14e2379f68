#!/usr/bin/python3
"""Reference lemmas and stems from NLTK, for tests/data/nltk_text_test.cpp.

Usage: nltk_text_reference.py WORDNET_DIR

Prints one line per query, tab-separated:
    L <pos> <word> <lemma>     WordNetLemmatizer().lemmatize(word, pos)
    S <word> <stem>            PorterStemmer().stem(word)   (NLTK_EXTENSIONS mode)
and exits 0. Exits 3 with a line "SKIP: <reason>" when NLTK cannot be used.

NLTK normally reads WordNet from nltk_data, which is not installed here. Its
WordNetCorpusReader works on Debian's WordNet 3.0 database (/usr/share/wordnet) except
that it opens a 'lexnames' file at start-up, which that package does not ship; lexnames
only names the lexicographer files of synsets, which lemmatising never reads, so a
temporary directory with links to the database files and a one-line lexnames suffices.

The queries: a hand list of caption words; every form of the four exception lists
(under its own part of speech and as a noun); inflected forms made from a sample of
each index (so that the substitution rules, not only the exceptions, are exercised);
and for the stemmer the hand list, the inflections and a sample of noun, verb and
adjective lemmas.
"""
import os
import sys
import tempfile
import warnings

try:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.stem.porter import PorterStemmer
    import nltk.stem.wordnet as nltk_wordnet
except Exception as e:  # ImportError, or a broken installation
    print("SKIP: NLTK is not importable by %s: %s" % (sys.executable, e))
    sys.exit(3)

HAND_WORDS = """
a man woman men women child children people person persons dog dogs cat cats horse
horses sheep geese goose mice mouse feet foot teeth tooth wolves leaves knives wives
buses boxes churches dishes glasses matches benches couches sandwiches pizzas bananas
skis skiing skier skiers surfboard surfboards surfing surfer riding rides rode ridden
running ran runs run sitting sat sits standing stood stands walking walked walks
holding held holds eating ate eaten eats playing played plays looking looked looks
flying flew flown flies fly kites kite parked parking lying lies lay laying tying
ties dying dies died dyed bigger biggest better best good well worse worst larger
largest smaller smallest happier happiest happily quickly slowly was were is are am
be been being has have had having does did done doing goes went gone going has
news sky skies innings inning outings canning howe proceed exceeded succeeding
generously generalization hopefulness conditional relational rational digitizer
operator feudalism decisiveness callousness formality sensitivity sensibility
triplicate formative formalize electricity electrical goodness revival allowance
inference airliner gyroscopic adjustable defensible irritant replacement adjustment
dependent adoption homologous communism activate angularity effective bowdlerize
probate rate cease controlling rolling agreed feed plastered bled motoring sing
conflated troubled sized hopping tanned falling hissing fizzed failing filing happy
enjoy spied tried archaeology geology theology analogous fully fulli alli
meeting buildings building clocks clock trains train tracks street streets signs
tennis racket rackets baseball bats bat players player giraffes giraffe elephants
elephant zebras zebra cows cow birds bird boats boat water beaches beach ocean waves
tables table plates plate food vegetables broccoli carrots oranges apples umbrellas
umbrella benches snow snowboard snowboarding frisbee frisbees laptop laptops phones
computers keyboards kitchens ovens refrigerators toilets bathrooms sinks mirrors
beds bedrooms couches pillows teddy bears bear cakes donuts doughnuts hotdogs
a an the of in on with and at to is two three several some many grassy sunny cloudy
colorful wooden metal plastic crowded empty busy parked sitting next while near
""".split()

INFLECTIONS = [("s", ""), ("es", ""), ("ed", ""), ("ing", ""), ("er", ""), ("est", ""),
               ("ies", "y"), ("ves", "f"), ("men", "man"), ("ches", "ch"), ("ied", "y"),
               ("ly", ""), ("ness", ""), ("ation", "e"), ("ization", "ize")]


def read_index(path):
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):
                continue
            words.append(line.split()[0])
    return words


def read_exceptions(path):
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            terms = line.split()
            if terms:
                words.append(terms[0])
    return words


def inflect(lemma):
    out = []
    for add, strip in INFLECTIONS:
        base = lemma
        if strip:
            if not lemma.endswith(strip):
                continue
            base = lemma[: -len(strip)]
        out.append(base + add)
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: nltk_text_reference.py WORDNET_DIR", file=sys.stderr)
        return 2
    source = sys.argv[1]
    warnings.simplefilter("ignore")  # "multilingual functions are not available"
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(source):
            os.symlink(os.path.join(source, name), os.path.join(tmp, name))
        if not os.path.exists(os.path.join(tmp, "lexnames")):
            with open(os.path.join(tmp, "lexnames"), "w") as f:
                f.write("00\tadj.all\t3\n")
        wn = WordNetCorpusReader(tmp, None)
        # WordNetLemmatizer calls the module-level `wn`; point it at this reader.
        nltk_wordnet.wn = wn
        lemmatizer = nltk_wordnet.WordNetLemmatizer()
        stemmer = PorterStemmer()

        files = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
        lemma_queries = []  # (pos, word)
        stem_queries = list(HAND_WORDS)
        for pos in "nvar":
            lemma_queries += [(pos, w) for w in HAND_WORDS]
        for pos, name in files.items():
            exc = read_exceptions(os.path.join(source, name + ".exc"))
            lemma_queries += [(pos, w) for w in exc]
            if pos != "n":
                lemma_queries += [("n", w) for w in exc]
            index = read_index(os.path.join(source, "index." + name))
            step = max(1, len(index) // 400)
            sample = index[::step]
            for lemma in sample:
                forms = [lemma] + inflect(lemma)
                lemma_queries += [(pos, w) for w in forms]
                if pos != "r":
                    stem_queries += forms
        seen = set()
        out = sys.stdout
        for pos, word in lemma_queries:
            if (pos, word) in seen:
                continue
            seen.add((pos, word))
            out.write("L\t%s\t%s\t%s\n" % (pos, word, lemmatizer.lemmatize(word, pos)))
        seen = set()
        for word in stem_queries:
            if word in seen:
                continue
            seen.add(word)
            out.write("S\t%s\t%s\n" % (word, stemmer.stem(word)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
