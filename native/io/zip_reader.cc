#include "io/zip_reader.h"

#include <stdexcept>

namespace sdtorch {
namespace {

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

[[noreturn]] void damaged(const char* what) { throw std::runtime_error(std::string("damaged zip archive: ") + what); }

}  // namespace

std::map<std::string, ZipEntry> read_zip_directory(const uint8_t* d, uint64_t size) {
  // End of central directory: 22 bytes + comment (<= 64 KiB), searched from the end.
  if (size < 22) damaged("too short");
  int64_t eocd = -1;
  for (int64_t i = int64_t(size) - 22; i >= 0 && i >= int64_t(size) - 22 - 65535; --i)
    if (le(d + i, 4) == 0x06054b50) { eocd = i; break; }
  if (eocd < 0) damaged("no end-of-directory record (is the file truncated?)");
  uint64_t count = le(d + eocd + 10, 2), cd_size = le(d + eocd + 12, 4), cd_off = le(d + eocd + 16, 4);
  if (count == 0xFFFF || cd_off == 0xFFFFFFFF || cd_size == 0xFFFFFFFF) {
    // ZIP64 locator sits right before the EOCD and points at the ZIP64 EOCD record.
    if (eocd < 20 || le(d + eocd - 20, 4) != 0x07064b50) damaged("missing ZIP64 locator");
    uint64_t rec = le(d + eocd - 20 + 8, 8);
    if (size < 56 || rec > size - 56 || le(d + rec, 4) != 0x06064b50) damaged("bad ZIP64 record");
    count = le(d + rec + 32, 8);
    cd_size = le(d + rec + 40, 8);
    cd_off = le(d + rec + 48, 8);
  }
  // Offsets may be 64-bit (ZIP64): compare without sums that could wrap around.
  if (cd_off > size || cd_size > size - cd_off) damaged("central directory beyond the end of the file");

  std::map<std::string, ZipEntry> out;
  const uint8_t* p = d + cd_off;
  const uint8_t* end = p + cd_size;
  for (uint64_t n = 0; n < count; ++n) {
    if (end - p < 46 || le(p, 4) != 0x02014b50) damaged("bad central directory entry");
    uint16_t method = le(p + 10, 2);
    uint64_t csize = le(p + 20, 4), usize = le(p + 24, 4), local = le(p + 42, 4);
    uint64_t name_len = le(p + 28, 2), extra_len = le(p + 30, 2), comment_len = le(p + 32, 2);
    if (uint64_t(end - p) < 46 + name_len + extra_len + comment_len) damaged("bad central directory entry");
    std::string name(reinterpret_cast<const char*>(p + 46), name_len);
    // ZIP64 extra field: the 0xFFFFFFFF fields follow in order usize, csize, local offset.
    const uint8_t* x = p + 46 + name_len;
    const uint8_t* xend = x + extra_len;
    while (xend - x >= 4) {
      uint16_t id = le(x, 2), len = le(x + 2, 2);
      if (xend - x < 4 + len) break;
      if (id == 0x0001) {
        const uint8_t* f = x + 4;
        int left = len;
        auto next = [&](uint64_t& field) {
          if (field == 0xFFFFFFFF && left >= 8) { field = le(f, 8); f += 8; left -= 8; }
        };
        next(usize);
        next(csize);
        next(local);
      }
      x += 4 + len;
    }
    if (local > size - 30 || le(d + local, 4) != 0x04034b50) damaged("bad local header");
    uint64_t data = local + 30 + le(d + local + 26, 2) + le(d + local + 28, 2);
    if (data > size || csize > size - data) damaged("entry extends beyond the end of the file (truncated?)");
    out[name] = ZipEntry{data, csize, method};
    p += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

}  // namespace sdtorch
