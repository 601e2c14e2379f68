// Reference captions for synthetic scenes: five per image, drawn from templates and
// synonyms with the image's own random stream, so that a model has to read the colours,
// shapes and sizes (attention) and put them in a sentence that states the spatial
// relation (language).
//
// Grammar, all lower case, tokens separated by single spaces (commas are tokens):
//   one object:    NP | NP REGION | there is NP | a single COLOUR SHAPE | ...
//   two objects:   NP_a REL(a, b) NP_b, with a and b in either order; REL is chosen by
//                  the dominant axis of the centres' offset (left of / right of /
//                  above / below, with synonyms); some captions omit the relation
//   three objects: listed left to right: NP_1 , NP_2 and NP_3 | from left to right : ...
//   NP = a|an [SIZE] COLOUR SHAPE
// Colour words are exactly colour_name(); sizes are {small, little, tiny} and {large,
// big}; shapes {circle, disc}, {square, box}, {triangle}.
#pragma once

#include <string>
#include <vector>

#include "data/synthetic/prng.h"
#include "data/synthetic/scene.h"

namespace caption::data {

enum class Relation { LeftOf, RightOf, Above, Below };

// Where a lies relative to b: along the axis with the larger offset; y grows downward.
Relation relation_of(const SceneObject& a, const SceneObject& b);

// `count` captions for the scene (distinct templates while the scene's list lasts).
std::vector<std::string> make_captions(const Scene& scene, Prng& rng, int count = 5);

}  // namespace caption::data
