#include "compress/cli/synthetic_corpus.h"

#include <algorithm>
#include <random>
#include <vector>

namespace slmc::cli {

namespace {
struct Person {
  const char* name;
  const char* pronoun;  // subject pronoun
};
constexpr Person kPeople[] = {{"Tom", "He"},  {"Mia", "She"},  {"Sam", "He"},  {"Lily", "She"},
                              {"Ben", "He"},  {"Zoe", "She"},  {"Max", "He"},  {"Anna", "She"}};
constexpr const char* kThings[] = {"apples", "balls", "books", "cups", "stars", "shells", "kites"};
constexpr const char* kColors[] = {"red", "blue", "green", "yellow", "small", "big"};
constexpr const char* kPlaces[] = {"park", "river", "garden", "school", "shop", "forest"};
constexpr const char* kFeel[] = {"happy", "glad", "proud", "sad", "tired"};
constexpr const char* kWords[] = {"zero", "one", "two",   "three", "four",  "five",    "six",
                                  "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen",
                                  "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"};

template <typename T, size_t N>
const T& pick(const T (&arr)[N], std::mt19937_64& rng) {
  return arr[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}
}  // namespace

std::string synthetic_stories(int64_t n_stories, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out;
  auto num = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int64_t s = 0; s < n_stories; ++s) {
    const Person& a = pick(kPeople, rng);
    const Person* b = &pick(kPeople, rng);
    while (b->name == a.name) b = &pick(kPeople, rng);
    const char* thing = pick(kThings, rng);
    const char* color = pick(kColors, rng);
    const char* place = pick(kPlaces, rng);
    int have = num(1, 9);
    std::string st;
    st += std::string("One day ") + a.name + " went to the " + place + " with " + b->name + ". ";
    st += std::string(a.name) + " had " + kWords[have] + " " + color + " " + thing + ". ";
    const int events = num(1, 3);
    for (int e = 0; e < events; ++e) {
      if ((num(0, 1) == 0 || have < 2) && have < 18) {
        const int more = num(1, std::min(9, 18 - have));  // sums stay within the number words
        st += std::string(b->name) + " gave " + a.name + " " + kWords[more] + " more. ";
        have += more;
      } else {
        const int lost = num(1, have - 1);
        st += std::string(a.pronoun) + " lost " + kWords[lost] + " in the " + place + ". ";
        have -= lost;
      }
      st += std::string("Now ") + a.name + " has " + kWords[have] + " " + color + " " + thing + ". ";
    }
    st += std::string(a.pronoun) + " was " + pick(kFeel, rng) + ". The end.\n\n";
    out += st;
  }
  return out;
}

}  // namespace slmc::cli
