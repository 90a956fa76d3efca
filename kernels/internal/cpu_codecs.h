// The CPU reference codecs behind kvf::CpuCodec(). Each is a stateless
// singleton that lives for the whole program; thread-safe.
#ifndef KVF_KERNELS_INTERNAL_CPU_CODECS_H_
#define KVF_KERNELS_INTERNAL_CPU_CODECS_H_

#include "kernels/codec.h"

namespace kvf::internal {

const Codec& CpuNoneCodec();
const Codec& CpuFp8Codec();
const Codec& CpuInt8Codec();
const Codec& CpuInt4Codec();

}  // namespace kvf::internal

#endif  // KVF_KERNELS_INTERNAL_CPU_CODECS_H_
