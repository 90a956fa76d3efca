# Helpers for the kvf-launch test drivers (sourced).

fail() { echo "FAIL: $*" >&2; exit 1; }

# True while `pid` runs (a zombie does not count: its parent may be slow to
# reap, or be a container's init that never does).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# The pid=N values of a kvf-launch cluster listing.
pids_of() { grep -o ' pid=[0-9]*' <<<"$1" | cut -d= -f2; }

# Fails unless every pid in "$@" is gone within 20 s.
expect_gone() {
  local deadline=$((SECONDS + 20)) pid
  for pid in "$@"; do
    while running "$pid"; do
      ((SECONDS < deadline)) || fail "pid $pid ($(tr '\0' ' ' </proc/$pid/cmdline)) still runs"
      sleep 0.1
    done
  done
}
