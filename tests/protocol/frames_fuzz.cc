// libFuzzer target: arbitrary bytes decoded as every frame type; whatever
// decodes must re-encode to the same bytes (the encoding is canonical), and
// nothing may read out of bounds (ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/frames.h"
#include "tests/protocol/all_frames.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvf::protocol;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)DecodeHeader(bytes);
  testing::ForEachFrame([&]<typename T>() {
    if (!testing::DecodeReencodes<T>(bytes)) {
      std::fprintf(stderr, "%s decoded but did not re-encode to the same bytes\n",
                   std::string(FrameTypeName(T::kType)).c_str());
      std::abort();
    }
  });
  return 0;
}
