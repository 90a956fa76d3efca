// In-place block I/O: the caller produces or consumes a block's stored bytes
// itself, where they are, instead of handing the client a buffer to copy
// (Client::BatchPutWith / BatchGetWith; client/paged.h is built on them).
//
// Where the owning agent runs on this host and its arena is mapped into this
// process (UCX over shared memory), the bytes a BlockWriter is given are the
// agent's own memory: a block gathered from an engine's pages lands in the
// agent with no copy in between, and a BlockReader scatters straight from it.
// Elsewhere (another host, the two-sided lane, a tenant's session) the client
// stages the bytes in a buffer of its own and moves them with the transport.
//
//   class MyWriter : public BlockWriter {
//     std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) override {
//       std::vector<absl::Status> out;
//       for (const BlockSlot& s : slots) out.push_back(Produce(s.index, s.bytes));
//       return out;
//     }
//   };
//
// Threading: the client calls Write/Read from its worker threads, one call per
// owner node of a batch, possibly several at once for different blocks; an
// implementation must be thread-safe across calls. Within one call the blocks
// are distinct.
#ifndef KVF_CLIENT_BLOCK_IO_H_
#define KVF_CLIENT_BLOCK_IO_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/codec.h"
#include "transport/transport.h"

namespace kvf {

// Where one block's stored bytes go.
struct BlockSlot {
  size_t index = 0;               // block begin + index of the call
  absl::Span<std::byte> bytes;    // exactly the block's stored size
  // The whole agent arena `bytes` lies in, when `bytes` is the agent's
  // memory (for callers that register it once, e.g. with CUDA); empty when
  // `bytes` is a client staging buffer.
  absl::Span<std::byte> arena;
  // The import `arena` is mapped through, to tie state to the mapping's
  // life (RemoteRegion::Attachment); null with an empty arena.
  const RemoteRegion* region = nullptr;
};

// Where one found block's stored bytes are (valid only during the call).
struct FoundBlock {
  size_t index = 0;
  absl::Span<const std::byte> bytes;  // the stored size
  CodecId codec = CodecId::kNone;     // the codec it was stored with
  absl::Span<const std::byte> arena;  // as BlockSlot::arena
  const RemoteRegion* region = nullptr;  // as BlockSlot::region
  // `bytes` are in CUDA device memory: the agent's GPU tier, mapped here over
  // CUDA IPC (only for a reader whose DeviceOrdinal() is a device).
  bool on_device = false;
};

class BlockWriter {
 public:
  virtual ~BlockWriter() = default;
  // Writes every slot's block, and returns (in order) a status per slot; the
  // bytes must be in place when it returns. A slot that fails is not
  // committed; its status is the block's result. A block may be written
  // more than once (once per copy the put writes: ack=all replicas, retries).
  virtual std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) = 0;
};

class BlockReader {
 public:
  virtual ~BlockReader() = default;
  // Consumes the blocks; a status per block (in order), which becomes the
  // block's result. The bytes are valid until it returns (the agent holds
  // them under a read lease for the call).
  virtual std::vector<absl::Status> Read(absl::Span<const FoundBlock> blocks) = 0;
  // The CUDA device this reader can take device-resident bytes on, or -1
  // (the default: host bytes only). With a device, blocks in the GPU tier
  // of an agent on this host come device to device (CUDA IPC) with
  // FoundBlock::on_device set, instead of staged through host memory.
  virtual int DeviceOrdinal() const { return -1; }
};

}  // namespace kvf

#endif  // KVF_CLIENT_BLOCK_IO_H_
