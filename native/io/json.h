// The small JSON subset safetensors headers use: objects, arrays, strings, integers.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sdtorch::json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double number = 0;
  bool integer = false;  // Number written without fraction or exponent (safetensors sizes must be)
  bool boolean = false;
  std::string str;
  std::vector<Value> items;
  std::vector<std::pair<std::string, Value>> members;  // file order kept
  const Value* find(const std::string& key) const;
};

// Throws std::runtime_error("... at byte N") on malformed input.
Value parse(const char* data, size_t size);
std::string quote(const std::string& s);

}  // namespace sdtorch::json
