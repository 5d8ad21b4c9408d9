// A small but non-trivial C++ program for the preload tests: compiled by g++
// (itself an allocation-heavy program) with and without libstrata.so
// preloaded, then run both ways. Its output is deterministic.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

std::uint64_t Next(std::uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

template <typename T>
struct Stats {
  T min{}, max{};
  long double sum = 0;
  std::size_t n = 0;
  void Add(const T& v) {
    if (n == 0 || v < min) min = v;
    if (n == 0 || max < v) max = v;
    sum += static_cast<long double>(v);
    ++n;
  }
};

template <typename Container>
std::string Join(const Container& c, const std::string& sep) {
  std::ostringstream os;
  bool first = true;
  for (const auto& v : c) {
    if (!first) os << sep;
    os << v;
    first = false;
  }
  return os.str();
}

struct Shape {
  virtual ~Shape() = default;
  virtual double Area() const = 0;
  virtual std::string Name() const = 0;
};
struct Rect : Shape {
  double w, h;
  Rect(double a, double b) : w(a), h(b) {}
  double Area() const override { return w * h; }
  std::string Name() const override { return "rect"; }
};
struct Tri : Shape {
  double b, h;
  Tri(double a, double c) : b(a), h(c) {}
  double Area() const override { return b * h / 2; }
  std::string Name() const override { return "tri"; }
};

using Value = std::variant<long, double, std::string, std::vector<int>>;

std::string Describe(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) return "s:" + x;
        else if constexpr (std::is_same_v<X, std::vector<int>>) return "v:" + std::to_string(x.size());
        else return "n:" + std::to_string(x);
      },
      v);
}

}  // namespace

int main() {
  std::uint64_t seed = 0x9e3779b97f4a7c15ull;

  // Word counts in a map and an unordered_map (printed sorted).
  std::map<std::string, int> ordered;
  std::unordered_map<std::string, int> hashed;
  std::vector<std::string> words;
  for (int i = 0; i < 200000; ++i) {
    std::string w(1 + Next(seed) % 12, 'a');
    for (auto& ch : w) ch = static_cast<char>('a' + Next(seed) % 6);
    ++ordered[w];
    ++hashed[w];
    words.push_back(std::move(w));
  }
  std::vector<std::pair<std::string, int>> top(hashed.begin(), hashed.end());
  std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  top.resize(10);
  for (const auto& [w, n] : top) std::cout << w << ' ' << n << ' ' << ordered[w] << '\n';
  std::cout << "distinct " << ordered.size() << ' ' << hashed.size() << '\n';

  // Sorting, sets, lists, deques of strings.
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  std::set<std::string, std::greater<>> rev(words.begin(), words.end());
  std::list<std::string> lst(rev.begin(), rev.end());
  lst.remove_if([](const std::string& s) { return s.size() % 3 == 0; });
  std::deque<std::size_t> lens;
  for (const auto& s : lst) lens.push_front(s.size());
  Stats<std::size_t> st;
  for (auto l : lens) st.Add(l);
  std::cout << "words " << words.size() << " list " << lst.size() << " min " << st.min << " max "
            << st.max << " sum " << static_cast<unsigned long long>(st.sum) << '\n';

  // Polymorphism through shared_ptr/unique_ptr.
  std::vector<std::shared_ptr<Shape>> shapes;
  for (int i = 0; i < 50000; ++i) {
    if (Next(seed) % 2) shapes.push_back(std::make_shared<Rect>(i % 17, i % 5));
    else shapes.push_back(std::make_shared<Tri>(i % 11, i % 7));
  }
  std::map<std::string, double> areas;
  for (const auto& s : shapes) areas[s->Name()] += s->Area();
  std::cout << "areas " << Join(std::vector<double>{areas["rect"], areas["tri"]}, " ") << '\n';
  std::vector<std::unique_ptr<std::vector<int>>> vecs;
  for (int i = 0; i < 2000; ++i) {
    vecs.push_back(std::make_unique<std::vector<int>>(i * 3 % 500));
    std::iota(vecs.back()->begin(), vecs.back()->end(), i);
  }
  long long total = 0;
  for (const auto& v : vecs) total = std::accumulate(v->begin(), v->end(), total);
  std::cout << "iota " << total << '\n';

  // Variants, optionals, exceptions.
  std::vector<Value> values;
  for (int i = 0; i < 1000; ++i) {
    switch (i % 4) {
      case 0: values.emplace_back(static_cast<long>(i)); break;
      case 1: values.emplace_back(i / 4.0); break;
      case 2: values.emplace_back(std::string(i % 40, 'z')); break;
      default: values.emplace_back(std::vector<int>(i % 30, i)); break;
    }
  }
  std::map<char, int> kinds;
  for (const auto& v : values) ++kinds[Describe(v)[0]];
  std::cout << "kinds " << kinds['n'] << ' ' << kinds['s'] << ' ' << kinds['v'] << '\n';
  int caught = 0;
  for (int i = 0; i < 1000; ++i) {
    try {
      std::optional<std::string> o;
      if (i % 3 == 0) o = std::string(100 + i, 'e');
      if (!o) throw std::runtime_error("missing " + std::to_string(i));
      (void)o->at(static_cast<std::size_t>(5000));
    } catch (const std::out_of_range&) {
      caught += 2;
    } catch (const std::exception& e) {
      caught += static_cast<int>(std::string(e.what()).size() > 0);
    }
  }
  std::cout << "caught " << caught << '\n';

  // A big string built by appending, then searched.
  std::string big;
  for (int i = 0; i < 300000; ++i) big += std::to_string(i % 1000) + ",";
  std::cout << "big " << big.size() << ' ' << big.find("999,0,1,") << ' ' << std::count(big.begin(), big.end(), '7')
            << '\n';
  return 0;
}
