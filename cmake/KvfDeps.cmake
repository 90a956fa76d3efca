# Finds the project's chosen dependencies (tools/setup-deps.sh installs them).
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(PkgConfig REQUIRED)

pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
add_library(kvf_xxhash INTERFACE)
target_link_libraries(kvf_xxhash INTERFACE PkgConfig::XXHASH)
# Inline XXH3 so hashing a block never crosses into the shared library.
target_compile_definitions(kvf_xxhash INTERFACE XXH_INLINE_ALL)

if(KVF_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(KVF_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# gRPC 1.51 and Protobuf 3.21 (proto/, coordinator/, agents and clients).
# Debian ships gRPC's CMake config but no Protobuf config, so Protobuf comes
# from CMake's FindProtobuf module.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
if(NOT TARGET gRPC::grpc_cpp_plugin)
  find_program(KVF_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
else()
  set(KVF_GRPC_CPP_PLUGIN $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
endif()
message(STATUS "kvfabric: gRPC ${gRPC_VERSION}, Protobuf ${Protobuf_VERSION}")

# cpp-httplib (/metrics, /healthz). Debian builds it as a shared library with
# OpenSSL, zlib and Brotli support; its pkg-config flags carry the matching
# CPPHTTPLIB_* defines, which must be the same in every user.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
add_library(kvf_httplib INTERFACE)
target_link_libraries(kvf_httplib INTERFACE PkgConfig::HTTPLIB)

# UCX (transport/): Debian's libucx-dev ships ucx.pc.
pkg_check_modules(UCX REQUIRED IMPORTED_TARGET ucx)
message(STATUS "kvfabric: UCX ${UCX_VERSION} found")
