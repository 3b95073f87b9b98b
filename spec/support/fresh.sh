#!/usr/bin/env bash
# fresh.sh: `make test-fresh`. The README's two commands (`make demo`, then `make test`), run
# exactly as written inside a minimal Debian 12 that has nothing but `make` added: what a user
# with a fresh machine or a slim container meets. Run as root (debootstrap, chroot, mount).
#
#   1. a root from `debootstrap --variant=minbase bookworm`, from the Debian mirror apt already
#      uses here, plus `make`; kept as a tarball (FRESH_CACHE, default
#      /var/cache/lua-faceswap/bookworm-minbase-make.tar.gz) so later runs skip this step;
#   2. that tarball unpacked afresh into a scratch directory, a `git clone` of this checkout's
#      HEAD copied to /root/lua-faceswap in it (committed work only: uncommitted changes are
#      not tested), /proc, /dev and /dev/pts mounted;
#   3. chroot: `make demo`, then `make test`, as root with a clean environment (no proxy
#      variables, no MAKEFLAGS), which install every Debian package they need themselves;
#   4. everything unmounted and the scratch root removed, however it ended (FRESH_KEEP=1 keeps
#      the root for a look inside).
# Ends with the demo's and the test's exit status and `make test`'s last line; exits non-zero
# unless both passed. Output of both commands goes to build/fresh/{demo,test}.log too.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
suite=bookworm
cache=${FRESH_CACHE:-/var/cache/lua-faceswap/$suite-minbase-make.tar.gz}
logs=$repo/build/fresh

if [ "$(id -u)" != 0 ]; then
  echo "test-fresh needs root (debootstrap, chroot, mount)" >&2
  exit 2
fi
command -v debootstrap >/dev/null || sh spec/support/debs.sh debootstrap

# The mirror apt uses already: the first deb.debian.org-like URI of a Debian source (deb822
# .sources files or one-line sources.list), so no other network is needed.
mirror() {
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk 'tolower($1) == "types:" { deb = ($0 ~ / deb( |$)/) }
         tolower($1) == "uris:" && deb && $2 !~ /security/ { print $2; exit }')
  [ -n "$m" ] || m=$(grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    grep -v security | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
  echo "${m:-http://deb.debian.org/debian}"
}

make_root_tarball() {
  local tmp url
  url=$(mirror)
  tmp=$(mktemp -d /var/tmp/faceswap-debootstrap.XXXXXX)
  echo "debootstrap --variant=minbase $suite from $url (once; cached in $cache)"
  if ! debootstrap --variant=minbase "$suite" "$tmp" "$url" >"$logs/debootstrap.log" 2>&1; then
    tail -n 20 "$logs/debootstrap.log"
    rm -rf "$tmp"
    return 1
  fi
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends make >/dev/null &&
           apt-get clean && rm -rf /var/lib/apt/lists/*'
  mkdir -p "$(dirname "$cache")"
  tar -C "$tmp" -czf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf "$tmp"
}

mkdir -p "$logs"
[ -f "$cache" ] || make_root_tarball

root=$(mktemp -d /var/tmp/faceswap-fresh.XXXXXX)
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
  done
  # never remove a root that still has something mounted in it
  if [ "${FRESH_KEEP:-0}" = 1 ] || grep -q " $root/" /proc/mounts; then
    echo "root kept in $root"
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tar -C "$root" -xzf "$cache"
cp /etc/resolv.conf "$root/etc/resolv.conf"       # apt-get inside reaches the same mirror
# an installed Debian always has /etc/hosts (the installer writes it); debootstrap does not
[ -s "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
  >"$root/etc/hosts"
# packages installed inside (nginx, tinyproxy) must not start daemons that outlive the chroot
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
git clone -q --no-hardlinks "$repo" "$root/root/lua-faceswap"
git -C "$root/root/lua-faceswap" checkout -q --detach "$(git rev-parse HEAD)"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes are not in the fresh root (it tests HEAD, $(git rev-parse --short HEAD))"
fi

mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount --bind /dev/pts "$root/dev/pts" && mounted+=("$root/dev/pts")

inside() { # inside LOG COMMAND: one of the README's commands in the fresh root
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb sh -c "cd /root/lua-faceswap && $2" 2>&1 | tee "$logs/$1.log"
  return "${PIPESTATUS[0]}"
}
demo=0
test=0
inside demo "make demo" || demo=$?
inside test "make test" || test=$?
echo "test-fresh: make demo exit $demo; make test exit $test: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/test.log" | tail -n 1)"
[ "$demo" = 0 ] && [ "$test" = 0 ]
