#include "kernels/codec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/internal/cpu_codecs.h"

namespace kvf {

std::string_view CodecName(CodecId id) {
  switch (id) {
    case CodecId::kNone: return "none";
    case CodecId::kFp8E4m3: return "fp8_e4m3";
    case CodecId::kInt8: return "int8";
    case CodecId::kInt4: return "int4";
  }
  return "unknown";
}

absl::StatusOr<CodecId> ParseCodec(std::string_view name) {
  if (name == "none") return CodecId::kNone;
  if (name == "fp8_e4m3" || name == "fp8") return CodecId::kFp8E4m3;
  if (name == "int8") return CodecId::kInt8;
  if (name == "int4") return CodecId::kInt4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec '", std::string(name), "' (want none, fp8_e4m3, int8 or int4)"));
}

absl::StatusOr<CodecId> CodecFromWire(uint8_t value) {
  if (value >= kNumCodecs) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown codec id ", value, " (known: 0..", kNumCodecs - 1, ")"));
  }
  return static_cast<CodecId>(value);
}

const Codec& CpuCodec(CodecId id) {
  switch (id) {
    case CodecId::kNone: return internal::CpuNoneCodec();
    case CodecId::kFp8E4m3: return internal::CpuFp8Codec();
    case CodecId::kInt8: return internal::CpuInt8Codec();
    case CodecId::kInt4: return internal::CpuInt4Codec();
  }
  // Unreachable for a CodecId that came from ParseCodec/CodecFromWire; an
  // out-of-range cast gets the raw codec rather than undefined behaviour.
  return internal::CpuNoneCodec();
}

}  // namespace kvf
