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
