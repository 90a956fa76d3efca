// Portable row kernels (kernels/core/cpu_rows.h) and the run-time choice of
// a vectorised implementation. The portable loops are the definition: a
// vectorised one must produce the same bytes for every input.
#include "kernels/core/cpu_rows.h"

#include <cstdlib>
#include <cstring>

#include "kernels/core/elem.h"
#include "kernels/core/internal/cpu_rows_impl.h"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore {
namespace rows_internal {
namespace {

using namespace ::kvf::internal;  // codec_math.h

template <typename F>
auto Dispatch(ElemType t, F&& f) {
  return DispatchElem(t, static_cast<F&&>(f));
}

// For non-negative floats the bit patterns order like the values, so an
// integer max vectorises where a float max that honours NaN does not.
template <typename E>
float AbsMaxT(const void* in, size_t n) {
  int32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t a = static_cast<int32_t>(FloatBits(E::Load(in, i)) & 0x7fffffffu);
    const int32_t v = a > 0x7f800000 ? 0 : a;
    m = v > m ? v : m;
  }
  return BitsFloat(static_cast<uint32_t>(m));
}

float AbsMax(ElemType t, const void* in, size_t n) {
  return Dispatch(t, [&](auto e) { return AbsMaxT<decltype(e)>(in, n); });
}

void MinMax(ElemType t, const void* in, size_t n, float* lo, float* hi) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < n; ++i) {
      const float x = E::Load(in, i);
      lo[i] = MinIgnoringNan(lo[i], x);
      hi[i] = MaxIgnoringNanSigned(hi[i], x);
    }
  });
}

void EncodeFp8(ElemType t, const void* in, size_t n, const float* centre, float inv,
               uint8_t* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    if (centre == nullptr) {
      for (size_t i = 0; i < n; ++i) out[i] = FloatToE4m3(MulRn(E::Load(in, i), inv));
    } else {
      for (size_t i = 0; i < n; ++i) {
        out[i] = FloatToE4m3(MulRn(Centred(E::Load(in, i), centre[i]), inv));
      }
    }
  });
}

void EncodeInt8(ElemType t, const void* in, size_t n, float inv, uint8_t* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(QuantizeInt8(E::Load(in, i), inv));
  });
}

void EncodeInt8Channels(ElemType t, const void* in, size_t n, const float* centre,
                        const float* inv, uint8_t* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < n; ++i) {
      out[i] = static_cast<uint8_t>(QuantizeInt8(Centred(E::Load(in, i), centre[i]), inv[i]));
    }
  });
}

void DecodeFp8(const uint8_t* in, size_t n, const float* centre, float scale, ElemType t,
               void* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    if (centre == nullptr) {
      for (size_t i = 0; i < n; ++i) E::Store(out, i, MulRn(E4m3ToFloat(in[i]), scale));
    } else {
      for (size_t i = 0; i < n; ++i) {
        E::Store(out, i, AddRn(centre[i], MulRn(E4m3ToFloat(in[i]), scale)));
      }
    }
  });
}

void DecodeInt8(const uint8_t* in, size_t n, float scale, ElemType t, void* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < n; ++i) {
      E::Store(out, i, DequantizeInt8(static_cast<int8_t>(in[i]), scale));
    }
  });
}

void DecodeInt8Channels(const uint8_t* in, size_t n, const float* centre, const float* scale,
                        ElemType t, void* out) {
  Dispatch(t, [&](auto e) {
    using E = decltype(e);
    for (size_t i = 0; i < n; ++i) {
      E::Store(out, i, AddRn(centre[i], DequantizeInt8(static_cast<int8_t>(in[i]), scale[i])));
    }
  });
}

}  // namespace

const RowKernels& PortableRows() {
  static constexpr RowKernels kPortable = {"portable", AbsMax,     MinMax,
                                           EncodeFp8,  EncodeInt8, EncodeInt8Channels,
                                           DecodeFp8,  DecodeInt8, DecodeInt8Channels};
  return kPortable;
}

}  // namespace rows_internal

namespace rows {
namespace {

// Chosen once, at first use (a function-local static: thread-safe).
const rows_internal::RowKernels& Active() {
  static const rows_internal::RowKernels& active = []() -> const rows_internal::RowKernels& {
    const char* env = std::getenv("KVF_CPU_ROWS");
    const bool portable = env != nullptr && std::strcmp(env, "portable") == 0;
    const rows_internal::RowKernels* avx2 = portable ? nullptr : rows_internal::Avx2Rows();
    return avx2 != nullptr ? *avx2 : rows_internal::PortableRows();
  }();
  return active;
}

}  // namespace

float AbsMax(ElemType t, const void* in, size_t n) { return Active().abs_max(t, in, n); }

void MinMax(ElemType t, const void* in, size_t n, float* lo, float* hi) {
  Active().min_max(t, in, n, lo, hi);
}

void EncodeFp8(ElemType t, const void* in, size_t n, const float* centre, float inv, uint8_t* out) {
  Active().encode_fp8(t, in, n, centre, inv, out);
}

void EncodeInt8(ElemType t, const void* in, size_t n, float inv, uint8_t* out) {
  Active().encode_int8(t, in, n, inv, out);
}

void EncodeInt8Channels(ElemType t, const void* in, size_t n, const float* centre, const float* inv,
                        uint8_t* out) {
  Active().encode_int8_channels(t, in, n, centre, inv, out);
}

void DecodeFp8(const uint8_t* in, size_t n, const float* centre, float scale, ElemType t,
               void* out) {
  Active().decode_fp8(in, n, centre, scale, t, out);
}

void DecodeInt8(const uint8_t* in, size_t n, float scale, ElemType t, void* out) {
  Active().decode_int8(in, n, scale, t, out);
}

void DecodeInt8Channels(const uint8_t* in, size_t n, const float* centre, const float* scale,
                        ElemType t, void* out) {
  Active().decode_int8_channels(in, n, centre, scale, t, out);
}

const char* Implementation() { return Active().name; }

}  // namespace rows
}  // namespace kvf::kcore
