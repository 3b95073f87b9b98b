#!/bin/sh
# debs.sh PACKAGE...: makes sure these Debian packages are installed. As root it installs the
# missing ones (apt-get update first, as a fresh machine has no package lists), printing the
# command it runs and keeping apt's own chatter (progress, debconf's warnings) out of sight
# unless it fails; otherwise it prints the exact command to run and fails. A package named
# twice is checked and named once.
missing=""
seen=" "
for pkg in "$@"; do
  case "$seen" in *" $pkg "*) continue ;; esac
  seen="$seen$pkg "
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages:$missing"
  echo "  apt-get update && apt-get install -y --no-install-recommends$missing"
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if apt-get -qq update >"$log" 2>&1 &&
     apt-get -qq -o Dpkg::Use-Pty=0 install -y --no-install-recommends $missing >>"$log" 2>&1; then
    rm -f "$log"
    exit 0
  fi
  echo "apt-get failed:" >&2
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
echo "missing Debian packages; run:" >&2
echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
