# The Abseil-free kernel core (kernels/core/, kernels/cuda/): used by the main
# build (kernels/CMakeLists.txt) and by the standalone project
# (kernels/standalone/), which has only CUDA and GoogleTest.
#
# kvf_add_kernels_core(<target> REPO_ROOT <dir> [CUDA])
function(kvf_add_kernels_core target)
  cmake_parse_arguments(K "CUDA" "REPO_ROOT" "" ${ARGN})
  set(dir ${K_REPO_ROOT}/kernels)
  add_library(${target} STATIC ${dir}/core/cpu_codec_ref.cc ${dir}/core/cpu_rows.cc
                               ${dir}/core/cpu_rows_avx2.cc ${dir}/core/paged.cc)
  target_include_directories(${target} PUBLIC ${K_REPO_ROOT})
  target_compile_features(${target} PUBLIC cxx_std_20)
  # The CPU codec loops are written to be vectorised; GCC does little of that
  # below -O3, and without -fno-trapping-math it will not if-convert the
  # branch-free selects of codec_math.h (results are unchanged: it only drops
  # the promise to raise FP exceptions exactly where the source does).
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set_source_files_properties(${dir}/core/cpu_codec_ref.cc ${dir}/core/cpu_rows.cc
                                TARGET_DIRECTORY ${target}
                                PROPERTIES COMPILE_OPTIONS "-O3;-fno-trapping-math")
    # The AVX2 row kernels enable AVX2 and F16C per function (a target
    # attribute), never FMA; -ffp-contract=off keeps every multiply and add
    # rounded on its own whatever the compiler's default.
    set_source_files_properties(${dir}/core/cpu_rows_avx2.cc TARGET_DIRECTORY ${target}
                                PROPERTIES COMPILE_OPTIONS "-O3;-ffp-contract=off")
  endif()
  if(K_CUDA)
    target_sources(${target} PRIVATE ${dir}/cuda/codec_kernels.cu ${dir}/cuda/paged_kernels.cu)
    target_link_libraries(${target} PUBLIC CUDA::cudart_static)
    set_target_properties(${target} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF
                                               POSITION_INDEPENDENT_CODE ON)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
  endif()
endfunction()
