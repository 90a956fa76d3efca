#!/usr/bin/env bash
# Bundles what kvfabric's GPU tests and benchmarks need, to run them on a GPU
# machine that has CUDA (and PyTorch's NCCL) but none of our Debian libraries
# (docs/kernels.md, "Running on a GPU machine").
#
#   tools/gpu-bundle.sh [BUILD_DIR] [OUT_DIR]     # here: build/release, gpu-bundle
#   gpu-bundle/run-gpu.sh RESULTS_DIR            # there: every GPU test and benchmark
#
# The bundle: the GPU test binaries, kvf-kernel-bench, kvf-offload-bench,
# kvf-agent and kvf-coordinator (stripped of debug info; kvf-offload-bench
# finds the other two beside itself), every shared library they load
# except the C library, the CUDA driver and NCCL (the GPU machine's own:
# PyTorch's site-packages/nvidia/nccl/lib, found by run-gpu.sh), UCX's
# transport modules (UCX_MODULE_DIR), and GoogleTest's sources for the
# standalone kernel build (kernels/standalone). It is written as one
# compressed file, gpu-bundle/kvf-gpu.tar.xz, plus run-gpu.sh, small enough to
# travel with the working tree (about 20 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
out=${2:-gpu-bundle}

tests=(tests/kernels/kvf_codec_gpu_test tests/kernels/kvf_codec_gpu_core_test
       tests/kernels/kvf_paged_gpu_test tests/transport/kvf_transport_conformance_test
       tests/cluster/kvf_paged_gpu_client_test)
tools=(bench/kernels/kvf-kernel-bench bench/offload/kvf-offload-bench node/kvf-agent coordinator/kvf-coordinator)
for f in "${tests[@]}" "${tools[@]}"; do
  [[ -x $build/$f ]] || { echo "gpu-bundle: $build/$f is not built (cmake --build --preset release)" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/kvf/bin" "$stage/kvf/lib" "$stage/kvf/ucx"
for f in "${tests[@]}" "${tools[@]}"; do
  objcopy --strip-debug "$build/$f" "$stage/kvf/bin/$(basename "$f")"
done

# Shared libraries: everything ldd resolves, except what the GPU machine must
# provide itself (glibc and the loader, the CUDA driver, NCCL).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libcuda\.so|libnccl\.so)'
for f in "$stage"/kvf/bin/*; do
  ldd "$f" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  cp -L "$path" "$stage/kvf/lib/$name"
done
# UCX loads its transports (shm, tcp, cma, ...) as modules at run time.
ucx_modules=$(dirname "$(ldconfig -p | awk '/libucp\.so\.0 / {print $NF; exit}')")/ucx
cp -L "$ucx_modules"/*.so* "$stage/kvf/ucx/" 2>/dev/null || true
for m in "$stage"/kvf/ucx/*; do
  ldd "$m" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip || -e $stage/kvf/lib/$name ]] && continue
  cp -L "$path" "$stage/kvf/lib/$name"
done
strip --strip-unneeded "$stage"/kvf/lib/* "$stage"/kvf/ucx/* 2>/dev/null || true

# GoogleTest sources, for building kernels/standalone there.
cp -r /usr/src/googletest "$stage/kvf/googletest"

mkdir -p "$out"
tar -C "$stage" -cJf "$out/kvf-gpu.tar.xz" kvf
cp tools/gpu-run.sh "$out/run-gpu.sh"
chmod +x "$out/run-gpu.sh"
echo "gpu-bundle: $out/kvf-gpu.tar.xz ($(du -h "$out/kvf-gpu.tar.xz" | cut -f1)), $out/run-gpu.sh"
