// UCX backend: memory. Registration of caller memory and allocation of
// UCX-owned memory (ucp_mem_map), packed remote keys in descriptors, the
// owner's validation of an import, and unpacking the rkey on the importer.
#include "absl/strings/str_cat.h"
#include "transport/ucx/ucx_internal.h"
#include "transport/ucx/ucx_status.h"

namespace kvf::transport_internal::ucx {

UcxMemoryRegion::~UcxMemoryRegion() { owner_->ForgetRegion(descriptor_.region_id); }

namespace {

absl::Status CheckMemoryType(const Capabilities& caps, MemoryType type, const char* call) {
  if (type == MemoryType::kCuda && !caps.cuda_memory) {
    return absl::InvalidArgumentError(
        absl::StrCat(call, ": this UCX (", caps.fabric, ") cannot move CUDA memory"));
  }
  return absl::OkStatus();
}

ucs_memory_type_t UcsMemoryType(MemoryType type) {
  return type == MemoryType::kCuda ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxTransport::RegisterMemory(void* data,
                                                                           size_t size,
                                                                           MemoryType type) {
  KVF_RETURN_IF_ERROR(CheckOneSided("RegisterMemory"));
  if (data == nullptr || size == 0) {
    return absl::InvalidArgumentError("RegisterMemory: empty range");
  }
  KVF_RETURN_IF_ERROR(CheckMemoryType(caps_, type, "RegisterMemory"));
  const std::string ctx = absl::StrCat("of ", size, " bytes of ",
                                       std::string(MemoryTypeName(type)), " memory");
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                  UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.address = data;
  mp.length = size;
  mp.memory_type = UcsMemoryType(type);
  ucp_mem_h raw_memh = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_mem_map(context_.get(), &mp, &raw_memh), "ucp_mem_map", ctx));
  return MakeRegion(data, size, type, UcpMemh(raw_memh, ReleaseMemh{context_.get()}), ctx);
}

// UCX picks the allocator by UCX_ALLOC_PRIO (default md:sysv, md:posix, thp,
// mmap, heap): with a shared-memory transport in the context that is a posix
// (or sysv) segment, whose packed rkey lets a peer on this machine map it and
// serve ucp_get/put as a memcpy on the rma lane, with no help from this
// process. Registered caller memory has no such key in UCX 1.13 (posix/sysv
// can only allocate, and cma is a rendezvous-only lane), so RMA on it falls
// back to software emulation over active messages.
absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxTransport::AllocateMemory(size_t size,
                                                                           MemoryType type) {
  KVF_RETURN_IF_ERROR(CheckOneSided("AllocateMemory"));
  if (size == 0) return absl::InvalidArgumentError("AllocateMemory: empty range");
  KVF_RETURN_IF_ERROR(CheckMemoryType(caps_, type, "AllocateMemory"));
  const std::string ctx = absl::StrCat("allocating ", size, " bytes of ",
                                       std::string(MemoryTypeName(type)), " memory");
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                  UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.address = nullptr;
  mp.length = size;
  mp.flags = UCP_MEM_MAP_ALLOCATE;
  mp.memory_type = UcsMemoryType(type);
  ucp_mem_h raw_memh = nullptr;
  KVF_RETURN_IF_ERROR(UcxError(ucp_mem_map(context_.get(), &mp, &raw_memh), "ucp_mem_map", ctx));
  UcpMemh memh(raw_memh, ReleaseMemh{context_.get()});  // unmapping frees it
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  KVF_RETURN_IF_ERROR(UcxError(ucp_mem_query(raw_memh, &attr), "ucp_mem_query", ctx));
  if (attr.address == nullptr || attr.length < size) {
    return absl::InternalError(absl::StrCat("ucp_mem_map ", ctx, ": got ", attr.length, " bytes"));
  }
  return MakeRegion(attr.address, size, type, std::move(memh), ctx);
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxTransport::MakeRegion(void* data, size_t size,
                                                                       MemoryType type,
                                                                       UcpMemh memh,
                                                                       const std::string& ctx) {
  void* rkey_buffer = nullptr;
  size_t rkey_size = 0;
  KVF_RETURN_IF_ERROR(UcxError(ucp_rkey_pack(context_.get(), memh.get(), &rkey_buffer, &rkey_size),
                               "ucp_rkey_pack", ctx));
  UcpRkeyBuffer packed(rkey_buffer, {});

  RemoteDescriptor d;
  d.address = reinterpret_cast<uint64_t>(data);
  d.size = size;
  d.memory_type = type;
  d.rkey.assign(static_cast<const char*>(rkey_buffer), rkey_size);
  {
    absl::MutexLock l(&mu_);
    do {
      d.region_id = rng_();
    } while (d.region_id == 0 || regions_.contains(d.region_id));
    regions_[d.region_id] = RegionInfo{d.address, d.size};
  }
  return std::make_unique<UcxMemoryRegion>(this, data, size, type, std::move(memh), std::move(d));
}

absl::StatusOr<std::unique_ptr<RemoteRegion>> UcxTransport::ImportRemote(
    PeerId peer, const RemoteDescriptor& d, absl::Time deadline) {
  KVF_RETURN_IF_ERROR(CheckOneSided("ImportRemote"));
  if (d.memory_type == MemoryType::kCuda && !caps_.cuda_memory) {
    return absl::InvalidArgumentError("ImportRemote: this UCX cannot move CUDA memory");
  }
  std::string request;
  ByteWriter w(&request);
  w.Put<uint64_t>(d.region_id);
  w.Put<uint64_t>(d.address);
  w.Put<uint64_t>(d.size);
  KVF_RETURN_IF_ERROR(CallInternal(peer, kValidateRegion, request, deadline).status());
  KVF_ASSIGN_OR_RETURN(std::shared_ptr<Conn> conn, FindConn(peer));
  ucp_rkey_h rkey = nullptr;
  KVF_RETURN_IF_ERROR(conn->WithEndpoint([&](ucp_ep_h ep) {
    return UcxError(ucp_ep_rkey_unpack(ep, d.rkey.data(), &rkey), "ucp_ep_rkey_unpack",
                    absl::StrCat("from ", conn->label()));
  }));
  UcpRkey owned(rkey, {});
  // A peer's host region allocated in shared memory (AllocateMemory) can be
  // mapped here: then gets and puts are a memcpy by the posting thread, with
  // no worker lock and no progress (docs/transport.md, "Mapped regions").
  void* mapped = nullptr;
  if (d.memory_type != MemoryType::kHost ||
      ucp_rkey_ptr(rkey, d.address, &mapped) != UCS_OK) {
    mapped = nullptr;
  }
  auto region = std::make_unique<UcxRemoteRegion>(std::move(conn), d, std::move(owned), mapped);
  // Page tables for the whole mapping, built off the transfer path: a put or
  // get then pays no first-touch faults here (docs/transport.md).
  region->PopulateInBackground();
  return region;
}

absl::StatusOr<std::string> UcxTransport::ValidateRegion(std::string_view request) {
  ByteReader r(request);
  uint64_t id = 0, address = 0, size = 0;
  if (!r.Get(&id) || !r.Get(&address) || !r.Get(&size) || r.remaining() != 0) {
    return absl::InvalidArgumentError("region validation: malformed request");
  }
  absl::MutexLock l(&mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) {
    return absl::NotFoundError(absl::StrCat("region ", absl::Hex(id), " is not registered with '",
                                            config_.name, "' (never, or deregistered)"));
  }
  if (it->second.address != address || it->second.size != size) {
    return absl::InvalidArgumentError(absl::StrCat("region ", absl::Hex(id),
                                                   ": descriptor does not match the registration"));
  }
  return std::string();
}

}  // namespace kvf::transport_internal::ucx
