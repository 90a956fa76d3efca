// CUDA codecs on contiguous blocks (kernels/core/cuda_ops.h). The kernels
// live in encode_kernels.cuh and decode_kernels.cuh (shared with the fused
// paged gather/scatter): one launch per call each way.
#include <algorithm>
#include <string>

#include "kernels/cuda/decode_kernels.cuh"
#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/encode_kernels.cuh"

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
  if (Result r = CheckDeviceIndexRange(shape, "EncodeOnDevice"); !r.ok()) return r;
  ForDType(shape.dtype, [&](auto elem) {
    using E = decltype(elem);
    LaunchEncode(codec, CanonSrcFor<E>(d_block, shape), shape, fingerprint,
                 static_cast<uint8_t*>(d_out), 0, 2 * shape.num_layers, stream);
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
  if (codec == CodecId::kNone) {
    const size_t need = shape.BytesPerBlock();
    if (encoded_bytes < need) {
      return Result::DataLoss("DecodeOnDevice: encoded block truncated: " +
                              std::to_string(encoded_bytes) + " bytes, needs " +
                              std::to_string(need));
    }
    cudaMemcpyAsync(d_block, d_encoded, need, cudaMemcpyDeviceToDevice, stream);
    return LaunchResult("DecodeOnDevice: cudaMemcpyAsync");
  }
  DecodeArgs args;
  if (Result r = DecodeArgsFor(codec, shape, fingerprint, d_encoded, encoded_bytes,
                               "DecodeOnDevice", &args);
      !r.ok()) {
    return r;
  }
  if (d_error == nullptr) {
    return Result::InvalidArgument("DecodeOnDevice: d_error is required for this codec");
  }
  if (Result r = CheckDeviceIndexRange(shape, "DecodeOnDevice"); !r.ok()) return r;
  ForDType(shape.dtype, [&](auto elem) {
    using E = decltype(elem);
    LaunchDecode(codec, CanonDstFor<E>(d_block, shape), static_cast<const uint8_t*>(d_encoded),
                 args, 0, 2 * shape.num_layers, d_error, stream);
  });
  return LaunchResult("DecodeOnDevice: decode kernel");
}

}  // namespace kvf::kcore
