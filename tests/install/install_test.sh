#!/usr/bin/env bash
# cmake --install into a temp prefix; the layout, SONAME and exported symbols
# of libkvfabric.so; then the consumers of consumer/ built out of tree twice
# (find_package(kvfabric) and pkg-config, C++ and C each) and run against a
# cluster of the installed daemons, started by the installed kvf-launch.
#
#   install_test.sh BUILD_DIR CONSUMER_DIR VERSION CMAKE CXX CC PKG_CONFIG
set -uo pipefail
build=$1 consumer=$2 version=$3 cmake=$4 cxx=$5 cc=$6 pkg_config=$7

fail() { echo "FAIL: $*" >&2; exit 1; }
# Runs a command quietly; prints its output and fails when it fails.
quiet() {
  local what=$1 log
  shift
  log=$("$@" 2>&1) || { echo "$log"; fail "$what"; }
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvf-install-test.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
tmp=$(readlink -f "$tmp")
prefix=$tmp/prefix
# The daemons must be the installed ones (kvf-launch looks beside itself).
unset KVF_COORDINATOR_BIN KVF_AGENT_BIN

echo "== cmake --install $build --prefix $prefix"
quiet "cmake --install" "$cmake" --install "$build" --prefix "$prefix"

echo "== layout"
PKG_CONFIG_PATH=$(echo "$prefix"/lib*/pkgconfig)
export PKG_CONFIG_PATH
libdir=$("$pkg_config" --variable=libdir kvfabric) || fail "pkg-config does not find kvfabric.pc"
libdir=$(readlink -f "$libdir")
[[ $libdir == "$prefix"/lib* ]] || fail "libdir $libdir is outside the prefix"
major=${version%%.*}
soversion=$major  # 0.x: major.minor (cmake/KvfInstall.cmake)
if [[ $major == 0 ]]; then soversion=${version%.*}; fi
lib=${libdir#"$prefix"/}
for f in bin/kvf-coordinator bin/kvf-agent bin/kvfctl bin/kvf-launch bin/kvf-codec-advisor \
         "$lib/libkvfabric.so.$version" "$lib/libkvfabric.so.$soversion" "$lib/libkvfabric.so" \
         "$lib/cmake/kvfabric/kvfabricConfig.cmake" \
         "$lib/cmake/kvfabric/kvfabricConfigVersion.cmake" \
         include/kvfabric/kvf.h include/kvfabric/client/client.h include/kvfabric/client/paged.h \
         include/kvfabric/client/sequence.h include/kvfabric/common/block_key.h; do
  [[ -e $prefix/$f ]] || fail "$f is not installed"
done
# No internals and no sources beside the headers.
extra=$(find "$prefix/include" -type f ! -name '*.h')
[[ -z $extra ]] || fail "not headers: $extra"
find "$prefix/include" -path '*/internal/*' | grep -q . && fail "internal headers installed"
soname=$(readelf -d "$libdir/libkvfabric.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libkvfabric.so.$soversion" ]] || fail "SONAME '$soname', want libkvfabric.so.$soversion"
# Exported: the C API and namespace kvf only.
others=$(nm -DC --defined-only "$libdir/libkvfabric.so" | cut -d' ' -f3- |
         grep -Ev '^((typeinfo|typeinfo name|vtable|VTT|guard variable) for |(non-)?virtual thunk to )?(kvf::|kvf_)' |
         head -5)
[[ -z $others ]] || fail "libkvfabric.so exports more than kvf: $others"
# The installed codec advisor runs (its own test covers what it says).
"$prefix/bin/kvf-codec-advisor" --layout=1,2,64,64 --synthetic=outliers --blocks=1 \
  --budget=0.01 | grep -q "recommend" || fail "kvf-codec-advisor gave no recommendation"
echo "installed: $(cd "$prefix" && find . -type f | wc -l) files, SONAME $soname," \
     "$(nm -D --defined-only "$libdir/libkvfabric.so" | wc -l) exported symbols"

# The program must load libkvfabric.so from the prefix, never from the build.
loads_from_prefix() {
  local lib
  lib=$(ldd "$1" | sed -n 's/.*libkvfabric\.so\.[0-9.]* => \([^ ]*\).*/\1/p')
  [[ -n $lib && $(readlink -f "$lib") == "$libdir"/* ]] ||
    fail "$1 loads libkvfabric from '$lib', not from $libdir"
}

echo "== find_package(kvfabric) build"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
quiet "configuring the find_package consumer" \
  "$cmake" -S "$consumer" -B "$tmp/cmake-build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc"
found=$(sed -n 's/^kvfabric_DIR:PATH=//p' "$tmp/cmake-build/CMakeCache.txt")
[[ $(readlink -f "$found") == "$libdir"/cmake/kvfabric ]] || fail "kvfabric_DIR is $found"
quiet "building the find_package consumer" "$cmake" --build "$tmp/cmake-build" --parallel 2
loads_from_prefix "$tmp/cmake-build/consumer"
loads_from_prefix "$tmp/cmake-build/consumer_c"

echo "== pkg-config build: $("$pkg_config" --cflags --libs kvfabric)"
mkdir -p "$tmp/pc-build"
# shellcheck disable=SC2046  # pkg-config output is a list of words
quiet "compiling the C++ consumer with pkg-config" \
  "$cxx" -std=c++20 -O1 -Wall -Wextra -o "$tmp/pc-build/consumer" "$consumer/consumer.cc" \
  $("$pkg_config" --cflags --libs kvfabric) -Wl,-rpath,"$libdir"
# shellcheck disable=SC2046
quiet "compiling the C consumer with pkg-config" \
  "$cc" -std=gnu11 -O1 -Wall -Wextra -o "$tmp/pc-build/consumer_c" "$consumer/consumer_c.c" \
  $("$pkg_config" --cflags --libs kvfabric) -Wl,-rpath,"$libdir"
loads_from_prefix "$tmp/pc-build/consumer"
loads_from_prefix "$tmp/pc-build/consumer_c"

echo "== against a cluster of the installed daemons"
# Run by the installed kvf-launch, with KVF_COORDINATOR and KVF_TOKEN set.
cat >"$tmp/run.sh" <<'EOF'
set -u
# kvf-launch ($PPID) runs the daemons: they must be the prefix's.
for d in /proc/[0-9]*; do
  stat=$(cat "$d/stat" 2>/dev/null) || continue
  rest=${stat##*) }
  read -r _ ppid _ <<<"$rest"
  [[ $ppid == "$PPID" && ${d#/proc/} != "$$" ]] || continue
  exe=$(readlink "$d/exe") || continue
  [[ $exe == "$PREFIX"/bin/kvf-* ]] || { echo "daemon $d runs $exe, not the installed one" >&2; exit 3; }
  echo "daemon pid ${d#/proc/}: $exe"
done
"$BUILDS"/cmake-build/consumer cmake &&
  "$BUILDS"/cmake-build/consumer_c cmake &&
  "$BUILDS"/pc-build/consumer pkg-config &&
  "$BUILDS"/pc-build/consumer_c pkg-config &&
  "$PREFIX"/bin/kvfctl status || exit 1
# The Python package, when this build has it, from the prefix alone.
if [[ -d $PREFIX/lib/python3/dist-packages/kvfabric ]]; then
  PYTHONPATH=$PREFIX/lib/python3/dist-packages /usr/bin/python3 -c \
    'import kvfabric, sys; assert kvfabric.__file__.startswith(sys.argv[1]), kvfabric.__file__' \
    "$PREFIX" && PYTHONPATH=$PREFIX/lib/python3/dist-packages /usr/bin/python3 -m kvfabric smoke
fi
EOF
out=$(PREFIX=$prefix BUILDS=$tmp timeout 300 "$prefix/bin/kvf-launch" local --agents 2 \
      --host_bytes 64M -- bash "$tmp/run.sh" 2>&1)
rc=$?
echo "$out"
[[ $rc == 0 ]] || fail "the consumers under kvf-launch: rc $rc"
[[ $(grep -c '^daemon pid' <<<"$out") == 3 ]] || fail "want 3 installed daemons (coordinator, 2 agents)"
for want in 'consumer(cmake): OK' 'consumer_c(cmake): OK' 'consumer(pkg-config): OK' \
            'consumer_c(pkg-config): OK'; do
  grep -qF "$want" <<<"$out" || fail "no '$want' line"
done
if [[ -d $prefix/lib/python3/dist-packages/kvfabric ]]; then
  grep -q '^smoke: .*; OK$' <<<"$out" || fail "the installed Python package's smoke check did not pass"
fi
echo PASS
