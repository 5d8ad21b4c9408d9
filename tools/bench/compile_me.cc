// compile_me.cc: the input of the "g++" real-program workload of
// `tools/strata bench`, which times `g++ -std=c++17 -O2 -c` of this file with
// each allocator preloaded into the compiler (the driver, cc1plus and as).
// With -DCOMPILE_ME_LIGHT (the quick run) the <regex> part is left out.
// It is meant to make the compiler work (templates from several standard
// headers, instantiated with several types, inlining at -O2), not to be run.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#ifndef COMPILE_ME_LIGHT
#include <regex>
#endif
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace bench {

template <typename K, typename V>
struct Table {
  std::map<K, V> ordered;
  std::unordered_map<K, std::vector<V>> buckets;

  void add(const K& k, const V& v) {
    ordered[k] = v;
    buckets[k].push_back(v);
  }
  std::optional<V> find(const K& k) const {
    auto it = ordered.find(k);
    if (it == ordered.end()) return std::nullopt;
    return it->second;
  }
  template <typename F>
  auto fold(F f) const {
    using R = decltype(f(std::declval<K>(), std::declval<V>()));
    R acc{};
    for (const auto& [k, v] : ordered) acc = acc + f(k, v);
    return acc;
  }
};

using Value = std::variant<long, double, std::string, std::vector<int>>;

struct Describe {
  std::string operator()(long v) const { return "long:" + std::to_string(v); }
  std::string operator()(double v) const { return "double:" + std::to_string(v); }
  std::string operator()(const std::string& v) const { return "str:" + v; }
  std::string operator()(const std::vector<int>& v) const {
    std::ostringstream os;
    os << "vec:";
    for (int x : v) os << x << ',';
    return os.str();
  }
};

template <typename T>
std::vector<T> sorted_unique(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

template <typename K, typename V>
std::string summarize(const Table<K, V>& t) {
  std::ostringstream os;
  os << t.ordered.size() << '/' << t.buckets.size();
  return os.str();
}

#ifndef COMPILE_ME_LIGHT
// <regex> is the heaviest part to compile; the quick run leaves it out.
std::vector<std::string> tokens(const std::string& text) {
  static const std::regex word(R"(([A-Za-z_][A-Za-z0-9_]*)|(\d+(\.\d+)?))");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator(); ++it)
    out.push_back(it->str());
  return out;
}

bool looks_like_date(const std::string& s) {
  static const std::regex date(R"((\d{4})-(\d{2})-(\d{2}))");
  std::smatch m;
  return std::regex_match(s, m, date) && std::stoi(m[2]) <= 12;
}
#else
std::vector<std::string> tokens(const std::string& text) {
  std::istringstream is(text);
  std::vector<std::string> out;
  for (std::string w; is >> w;) out.push_back(w);
  return out;
}

bool looks_like_date(const std::string& s) { return s.size() == 10 && s[4] == '-' && s[7] == '-'; }
#endif

std::string run_all(const std::string& text) {
  Table<std::string, long> words;
  Table<long, double> numbers;
  Table<int, std::string> names;
  Table<std::string, Value> values;
  auto toks = tokens(text);
  long i = 0;
  for (const auto& t : toks) {
    words.add(t, i);
    numbers.add(i, static_cast<double>(t.size()) / 3.0);
    names.add(static_cast<int>(i % 97), t);
    values.add(t, (i % 4 == 0)   ? Value{i}
                  : (i % 4 == 1) ? Value{i * 0.5}
                  : (i % 4 == 2) ? Value{t}
                                 : Value{std::vector<int>{int(i), int(i + 1)}});
    ++i;
  }
  std::set<std::string> described;
  for (const auto& [k, v] : values.ordered) described.insert(std::visit(Describe{}, v));
  auto total = words.fold([](const std::string& k, long v) { return long(k.size()) + v; });
  auto dsum = numbers.fold([](long k, double v) { return double(k) * v; });
  auto lens = names.fold([](int k, const std::string& v) { return std::size_t(k) + v.size(); });
  std::vector<long> keys;
  for (const auto& [k, v] : numbers.ordered) keys.push_back(k * 7 % 13);
  keys = sorted_unique(keys);
  std::vector<std::function<long(long)>> fs = {
      [](long x) { return x + 1; }, [](long x) { return x * 3; },
      [&](long x) { return x + total; }};
  long acc = std::accumulate(keys.begin(), keys.end(), 0L, [&](long a, long k) {
    for (const auto& f : fs) a = f(a + k) % 1000003;
    return a;
  });
  std::ostringstream os;
  os << summarize(words) << ' ' << summarize(numbers) << ' ' << summarize(names) << ' '
     << summarize(values) << ' ' << described.size() << ' ' << total << ' ' << dsum << ' '
     << lens << ' ' << acc << ' ' << looks_like_date(text);
  return os.str();
}

}  // namespace bench

std::string strata_bench_entry(const std::string& text) { return bench::run_all(text); }
