# scripts/lib.sh -- shared by scripts/demo, scripts/test and scripts/bench.
# Sourced, not run. Installs what the project needs from Debian's packages
# and builds it.

WH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every Debian package the build, the tests and the benchmarks use.
WH_PACKAGES=(
  build-essential cmake pkg-config
  lua5.4 liblua5.4-dev lua-cjson lua-busted
  libhiredis-dev libuv1-dev libyaml-dev libyajl-dev
  locales valgrind faketime
  clang libclang-rt-14-dev
  redis-server ruby-sidekiq
)

wh_say() { printf '==> %s\n' "$*" >&2; }

# wh_ensure_packages [extra packages...]: installs whatever is missing with
# apt-get when root; otherwise prints the exact apt-get line and fails.
wh_ensure_packages() {
  local want=("${WH_PACKAGES[@]}" "$@") missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    printf 'workerhost needs these Debian packages; install them with:\n  sudo apt-get install -y %s\n' "${missing[*]}" >&2
    return 1
  fi
  wh_say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# wh_build DIR [cmake options...]: configures and builds into DIR. It
# configures every time (cheap once DIR exists), so options given now apply
# to a folder configured earlier with others.
wh_build() {
  local dir=$1; shift
  cmake -S "$WH_ROOT" -B "$dir" "$@" >&2 || return 1
  cmake --build "$dir" -j "$(nproc)" >&2
}
