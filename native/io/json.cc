#include "io/json.h"

#include <stdexcept>

namespace sdtorch::json {

const Value* Value::find(const std::string& key) const {
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

namespace {

struct Parser {
  const char* p;
  const char* end;
  const char* begin;

  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("malformed JSON header (") + what + " at byte " +
                             std::to_string(p - begin) + ")");
  }
  void ws() {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  }
  void expect(char c) {
    ws();
    if (p >= end || *p != c) fail("unexpected character");
    ++p;
  }
  void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (end - p < 4) fail("short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++p) {
      char c = *p;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (p >= end) fail("unterminated string");
      char c = *p++;
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= end) fail("unterminated escape");
      char e = *p++;
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
            p += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
  Value value(int depth) {
    if (depth > 64) fail("nesting too deep");
    ws();
    if (p >= end) fail("unexpected end");
    Value v;
    char c = *p;
    if (c == '{') {
      v.kind = Value::Object;
      ++p;
      ws();
      if (p < end && *p == '}') return ++p, v;
      while (true) {
        std::string k = string();
        expect(':');
        v.members.emplace_back(std::move(k), value(depth + 1));
        ws();
        if (p < end && *p == ',') { ++p; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Value::Array;
      ++p;
      ws();
      if (p < end && *p == ']') return ++p, v;
      while (true) {
        v.items.push_back(value(depth + 1));
        ws();
        if (p < end && *p == ',') { ++p; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Value::String;
      v.str = string();
      return v;
    }
    auto word = [&](const char* w, size_t n) { return size_t(end - p) >= n && std::string(p, n) == w; };
    if (word("null", 4)) return p += 4, v;
    if (word("true", 4)) { v.kind = Value::Bool; v.boolean = true; p += 4; return v; }
    if (word("false", 5)) { v.kind = Value::Bool; p += 5; return v; }
    // Numbers: integers are what headers carry; accept the full grammar anyway.
    const char* s = p;
    if (p < end && (*p == '-' || *p == '+')) ++p;
    while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' || *p == '+')) ++p;
    if (p == s) fail("unexpected character");
    const std::string text(s, p);
    v.kind = Value::Number;
    v.integer = text.find_first_of(".eE+") == std::string::npos;
    try {
      v.number = std::stod(text);
    } catch (const std::exception&) {  // "-", "1e999": std::stod's own message says only "stod"
      p = s;
      fail("bad number");
    }
    return v;
  }
};

}  // namespace

Value parse(const char* data, size_t size) {
  Parser ps{data, data + size, data};
  Value v = ps.value(0);
  ps.ws();
  if (ps.p != ps.end) ps.fail("trailing characters");
  return v;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

}  // namespace sdtorch::json
