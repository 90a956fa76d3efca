# libkvfabric.so and `cmake --install` (docs/install.md). Included last from
# the top-level CMakeLists.txt, once every target exists.
#
#   lib/libkvfabric.so.<version>   kvf_client and the project libraries it is
#                                  built from, linked whole; exports kvf::* and
#                                  the C API kvf_* only (a version script)
#   include/kvfabric/...           the public headers and every project header
#                                  they include (found by the compiler at
#                                  install time), kvf.h at its root
#   bin/                           kvf-coordinator, kvf-agent, kvfctl, kvf-launch,
#                                  kvf-codec-advisor
#   lib/cmake/kvfabric/            find_package(kvfabric): kvfabric::client
#   lib/pkgconfig/kvfabric.pc      pkg-config
#
# Components: `runtime` (the library, the daemons and tools), `devel` (headers,
# the libkvfabric.so link, CMake and pkg-config files). Abseil, gRPC,
# Protobuf, UCX, OpenSSL stay shared-library dependencies of libkvfabric.so.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(_kvf_gen ${PROJECT_BINARY_DIR}/kvfabric)

# ---- libkvfabric.so ---------------------------------------------------------
# The libraries whose headers are installed go in whole, so every function a
# public header declares is in the .so whether or not kvf_client calls it;
# protocol/ and proto/ are internal and contribute what kvf_client uses.
set(_kvf_whole kvf_client kvf_common kvf_kernels kvf_kernels_core kvf_transport)

# A shared library needs a source; everything else comes from the archives.
file(CONFIGURE OUTPUT ${_kvf_gen}/kvfabric_so.cc
  CONTENT "// libkvfabric.so: the archives of cmake/KvfInstall.cmake, linked whole.\n")

# Exported: the C API and everything in namespace kvf (functions, variables,
# and the vtables, typeinfo, thunks and guard variables of kvf types, matched
# by their mangled names). Hidden: the template instances of std and Abseil
# code the archives carry (a user's own copies serve it) and whatever a static
# dependency brings in (cudart_static in CUDA builds).
file(CONFIGURE OUTPUT ${_kvf_gen}/kvfabric.map @ONLY CONTENT [=[
{
  global:
    kvf_*;
    extern "C++" {
      kvf::*;
    };
    _ZTIN3kvf*;  _ZTSN3kvf*;  _ZTVN3kvf*;  _ZTTN3kvf*;
    _ZThn*_N3kvf*;  _ZThn*_NK3kvf*;  _ZTv*_N3kvf*;  _ZTv*_NK3kvf*;
    _ZGVN3kvf*;  _ZGVZN3kvf*;  _ZGVZNK3kvf*;
  local:
    *;
};
]=])

add_library(kvfabric SHARED ${_kvf_gen}/kvfabric_so.cc)
add_library(kvfabric::client ALIAS kvfabric)
target_link_libraries(kvfabric
  PUBLIC absl::status absl::statusor absl::strings absl::time absl::span
  PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,kvf_client>")
# The others appear again as kvf_client's own dependencies; link them whole
# there too (CMake refuses one library with two link features otherwise).
foreach(lib IN LISTS _kvf_whole)
  set_property(TARGET kvfabric PROPERTY LINK_LIBRARY_OVERRIDE_${lib} WHOLE_ARCHIVE)
endforeach()
# What users compile against: the source tree here, include/kvfabric installed.
# The headers are C++20 (kvf.h is C); a C-only target ignores the feature.
target_include_directories(kvfabric INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/client/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/kvfabric>)
target_compile_features(kvfabric INTERFACE cxx_std_20)
target_link_options(kvfabric PRIVATE "LINKER:--version-script=${_kvf_gen}/kvfabric.map")
if(NOT KVF_SANITIZE AND NOT CMAKE_CXX_FLAGS MATCHES "-fsanitize")
  # Every symbol resolved at link time: a missing dependency fails the build,
  # not a user's program. (Clang's sanitizer runtimes come from the executable.)
  target_link_options(kvfabric PRIVATE "LINKER:--no-undefined")
endif()
# ABI (docs/install.md): the SONAME carries the major version, and in 0.x the
# minor too (0.x promises no ABI between minors: 0.2 must not load for 0.1).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(KVF_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
  set(KVF_SOVERSION ${PROJECT_VERSION_MAJOR})
endif()
set_target_properties(kvfabric PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION ${KVF_SOVERSION}
  EXPORT_NAME client
  LINK_DEPENDS ${_kvf_gen}/kvfabric.map
  INSTALL_RPATH_USE_LINK_PATH ON)

# ---- install rules ----------------------------------------------------------
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(_kvf_rpath "${CMAKE_INSTALL_LIBDIR}")
else()
  set(_kvf_rpath "\$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
endif()

install(TARGETS kvfabric EXPORT kvfabricTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT devel)

# The daemons and tools. Installed binaries keep the RPATH entries of
# non-system libraries they link (NCCL, CUDA under /usr/local/cuda) and find
# ../lib, so a prefix works wherever it is moved.
set(_kvf_tools)
foreach(tool kvf-coordinator kvf-agent kvfctl kvf-launch kvf-codec-advisor)
  if(TARGET ${tool})
    list(APPEND _kvf_tools ${tool})
  endif()
endforeach()
set_target_properties(${_kvf_tools} PROPERTIES
  INSTALL_RPATH "${_kvf_rpath}"
  INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS ${_kvf_tools} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

# Headers: client/client.h, paged.h, sequence.h and the C API, plus the closure
# of project headers they include, as the compiler finds it (g++ -MM) when
# `cmake --install` runs, so the list never goes stale. Paths are kept relative
# to the source root under include/kvfabric/; client/include/kvf.h lands at
# include/kvfabric/kvf.h. Abseil's include dirs are passed as system dirs, so
# -MM leaves Abseil out.
set(KVF_PUBLIC_HEADERS client/client.h client/paged.h client/sequence.h client/include/kvf.h)
set(_kvf_tu "")
foreach(h IN LISTS KVF_PUBLIC_HEADERS)
  string(APPEND _kvf_tu "#include \"${PROJECT_SOURCE_DIR}/${h}\"\n")
endforeach()
file(CONFIGURE OUTPUT ${_kvf_gen}/public_headers.cc CONTENT "${_kvf_tu}")
set(_kvf_hdr_flags -std=c++20 -I${PROJECT_SOURCE_DIR} -I${PROJECT_SOURCE_DIR}/client/include)
foreach(t absl::status absl::statusor absl::strings absl::time absl::span)
  get_target_property(_dirs ${t} INTERFACE_INCLUDE_DIRECTORIES)
  foreach(d IN LISTS _dirs)
    if(NOT d IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
      list(APPEND _kvf_hdr_flags -isystem ${d})
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES _kvf_hdr_flags)
set(_kvf_hdr_script [=[
# Generated by cmake/KvfInstall.cmake: installs the public headers of
# kvfabric and every project header they include.
set(_src "@PROJECT_SOURCE_DIR@")
set(_c_api_dir "@PROJECT_SOURCE_DIR@/client/include")
set(_incdir "@CMAKE_INSTALL_INCLUDEDIR@")
if(NOT IS_ABSOLUTE "${_incdir}")
  set(_incdir "${CMAKE_INSTALL_PREFIX}/${_incdir}")
endif()
execute_process(
  COMMAND "@CMAKE_CXX_COMPILER@" @_kvf_hdr_flags@ -MM -MT kvf "@_kvf_gen@/public_headers.cc"
  OUTPUT_VARIABLE _deps ERROR_VARIABLE _err RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "kvfabric: listing the public headers' includes failed:\n${_err}")
endif()
string(REPLACE "\\\n" " " _deps "${_deps}")
string(REGEX REPLACE "^kvf:" "" _deps "${_deps}")
string(REGEX REPLACE "[ \t\r\n]+" ";" _deps "${_deps}")
set(_headers)
foreach(f IN LISTS _deps)
  if(NOT f STREQUAL "" AND NOT f MATCHES "public_headers\\.cc$")
    get_filename_component(f "${f}" REALPATH)
    list(APPEND _headers "${f}")
  endif()
endforeach()
list(REMOVE_DUPLICATES _headers)
list(LENGTH _headers _count)
if(_count LESS 4)
  message(FATAL_ERROR "kvfabric: only ${_count} public headers found")
endif()
foreach(f IN LISTS _headers)
  cmake_path(IS_PREFIX _c_api_dir "${f}" NORMALIZE _in_c_api)
  cmake_path(IS_PREFIX _src "${f}" NORMALIZE _in_src)
  if(_in_c_api)
    file(RELATIVE_PATH _rel "${_c_api_dir}" "${f}")
  elseif(_in_src)
    file(RELATIVE_PATH _rel "${_src}" "${f}")
  else()
    message(FATAL_ERROR "kvfabric: a public header includes ${f}, outside the source tree")
  endif()
  get_filename_component(_dir "${_rel}" DIRECTORY)
  if(_dir STREQUAL "")
    file(INSTALL DESTINATION "${_incdir}/kvfabric" TYPE FILE FILES "${f}")
  else()
    file(INSTALL DESTINATION "${_incdir}/kvfabric/${_dir}" TYPE FILE FILES "${f}")
  endif()
endforeach()
]=])
set(_kvf_hdr_flags_str "")
foreach(f IN LISTS _kvf_hdr_flags)
  string(APPEND _kvf_hdr_flags_str " \"${f}\"")
endforeach()
set(_kvf_hdr_flags "${_kvf_hdr_flags_str}")
file(CONFIGURE OUTPUT ${_kvf_gen}/install_headers.cmake CONTENT "${_kvf_hdr_script}" @ONLY)
install(SCRIPT ${_kvf_gen}/install_headers.cmake COMPONENT devel)

# find_package(kvfabric): kvfabric::client, with the Abseil targets the C++
# headers need (find_dependency(absl) in the config file).
set(_kvf_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/kvfabric)
install(EXPORT kvfabricTargets NAMESPACE kvfabric:: DESTINATION ${_kvf_cmake_dir}
        COMPONENT devel)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kvfabricConfig.cmake.in
  ${_kvf_gen}/kvfabricConfig.cmake INSTALL_DESTINATION ${_kvf_cmake_dir})
# 0.x: a new minor version may change the API, so 0.1 only accepts 0.1.z;
# from 1.0 any later version of the same major does.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_kvf_compat SameMinorVersion)
else()
  set(_kvf_compat SameMajorVersion)
endif()
write_basic_package_version_file(${_kvf_gen}/kvfabricConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${_kvf_compat})
install(FILES ${_kvf_gen}/kvfabricConfig.cmake ${_kvf_gen}/kvfabricConfigVersion.cmake
        DESTINATION ${_kvf_cmake_dir} COMPONENT devel)

# pkg-config: relocatable, the prefix found from the .pc file's own place.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KVF_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(KVF_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _rel /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
  string(REGEX REPLACE "/$" "" _rel "${_rel}")
  set(KVF_PC_PREFIX "\${pcfiledir}/${_rel}")
  set(KVF_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(KVF_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}/kvfabric")
else()
  set(KVF_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}/kvfabric")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvfabric.pc.in ${_kvf_gen}/kvfabric.pc @ONLY)
install(FILES ${_kvf_gen}/kvfabric.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT devel)
