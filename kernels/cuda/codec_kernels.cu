// CUDA codecs on contiguous blocks (kernels/core/cuda_ops.h); the kernels live
// in device_common.cuh. Simple, correct kernels: one thread block per scale
// group for the reductions (fp8: per (layer, K|V, head); int8: per (layer,
// K|V, token); int4: per (layer, K|V) section), element-parallel decode.
#include <algorithm>
#include <string>

#include "kernels/cuda/device_common.cuh"

namespace kvf::kcore {

Result EncodeOnDevice(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                      const void* d_block, void* d_out, size_t out_bytes, cudaStream_t stream) {
  if (shape.ElementsPerBlock() == 0) return Result::InvalidArgument("EncodeOnDevice: empty shape");
  const size_t need = StoredSize(codec, shape);
  if (out_bytes < need) {
    return Result::InvalidArgument("EncodeOnDevice: output is " + std::to_string(out_bytes) +
                                   " bytes, needs " + std::to_string(need));
  }
  if (codec == CodecId::kNone) {
    cudaMemcpyAsync(d_out, d_block, need, cudaMemcpyDeviceToDevice, stream);
    return LaunchResult("EncodeOnDevice: cudaMemcpyAsync");
  }
  uint8_t* out = static_cast<uint8_t*>(d_out);
  if (codec == CodecId::kInt4) ZeroInt4Nibbles(shape, out, stream);
  ForDType(shape.dtype, [&](auto elem) {
    using E = decltype(elem);
    LaunchEncode(codec, CanonSrc<E>{d_block}, shape, fingerprint, out, 0,
                 size_t{2} * shape.num_layers, stream);
  });
  return LaunchResult("EncodeOnDevice: encode kernel");
}

Result DecodeOnDevice(CodecId codec, const KvShape& shape, uint64_t fingerprint,
                      const void* d_encoded, size_t encoded_bytes, void* d_block,
                      size_t block_bytes, uint32_t* d_error, cudaStream_t stream) {
  if (shape.ElementsPerBlock() == 0) return Result::InvalidArgument("DecodeOnDevice: empty shape");
  if (block_bytes < shape.BytesPerBlock()) {
    return Result::InvalidArgument("DecodeOnDevice: output is " + std::to_string(block_bytes) +
                                   " bytes, needs " + std::to_string(shape.BytesPerBlock()));
  }
  const size_t need = StoredSize(codec, shape);
  if (encoded_bytes < need) {
    return Result::DataLoss("DecodeOnDevice: encoded block truncated: " +
                            std::to_string(encoded_bytes) + " bytes, needs " +
                            std::to_string(need));
  }
  if (codec == CodecId::kNone) {
    cudaMemcpyAsync(d_block, d_encoded, need, cudaMemcpyDeviceToDevice, stream);
    return LaunchResult("DecodeOnDevice: cudaMemcpyAsync");
  }
  if (d_error == nullptr) {
    return Result::InvalidArgument("DecodeOnDevice: d_error is required for this codec");
  }
  const uint8_t* blob = static_cast<const uint8_t*>(d_encoded);
  CheckHeader<<<1, 64, 0, stream>>>(blob, MakeHeader(codec, shape, fingerprint), d_error);
  const size_t n = shape.ElementsPerBlock();
  ForDType(shape.dtype, [&](auto elem) {
    using E = decltype(elem);
    Decode<CanonDst<E>><<<DecodeGrid(n), kThreads, 0, stream>>>(
        CanonDst<E>{d_block}, codec, blob, ShapeFor(shape), RegionsFor(codec, shape),
        Int4DimsFor(shape), 0, n, d_error);
  });
  return LaunchResult("DecodeOnDevice: decode kernel");
}

}  // namespace kvf::kcore
