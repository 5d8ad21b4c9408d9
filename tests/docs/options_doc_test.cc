// docs/options.md is generated from the option list (alloc/options.h):
// this test fails when they differ, and rewrites the file when run with
// STRATA_UPDATE_DOCS=1 (then commit the result).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "alloc/options.h"

namespace strata {
namespace {

std::string Generate() {
  std::ostringstream out;
  out << "# strata options\n\n"
         "<!-- Generated from alloc/options.h by tests/docs/options_doc_test.cc:\n"
         "     run it with STRATA_UPDATE_DOCS=1 to rewrite this file. -->\n\n"
         "strata reads its options once, at initialisation, from environment\n"
         "variables. A value that does not parse gets one warning line on stderr\n"
         "naming the variable and the value, and the default is used.\n\n"
         "| variable | default | values | meaning |\n"
         "|---|---|---|---|\n";
  size_t n;
  const OptionInfo* t = OptionTable(&n);
  for (size_t i = 0; i < n; ++i) {
    const char* values = "";
    switch (t[i].kind) {
      case OptKind::kInt: values = "integer"; break;
      case OptKind::kBool: values = "0 or 1"; break;
      case OptKind::kChoice: values = t[i].choices; break;
      case OptKind::kString: values = "text"; break;
    }
    std::string choices = values;
    for (size_t p = 0; (p = choices.find('|', p)) != std::string::npos; p += 3) choices.replace(p, 1, " \\| ");
    out << "| `STRATA_" << t[i].name << "` | `" << (t[i].default_text[0] ? t[i].default_text : "(none)")
        << "` | " << choices << " | " << t[i].help << " |\n";
  }
  return out.str();
}

TEST(Docs, OptionsMarkdownMatchesTheOptionList) {
  const std::string path = std::string(STRATA_SOURCE_DIR) + "/docs/options.md";
  std::string expected = Generate();
  if (const char* update = std::getenv("STRATA_UPDATE_DOCS"); update != nullptr && update[0] == '1') {
    std::ofstream(path) << expected;
  }
  std::ifstream in(path);
  std::stringstream actual;
  actual << in.rdbuf();
  EXPECT_EQ(actual.str(), expected) << "docs/options.md is out of date: run this test with STRATA_UPDATE_DOCS=1";
}

}  // namespace
}  // namespace strata
