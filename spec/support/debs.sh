#!/bin/sh
# debs.sh PACKAGE...: makes sure these Debian packages are installed. As root it installs the
# missing ones (apt-get update first, as a fresh machine has no package lists); otherwise it
# prints the exact command to run and fails.
missing=""
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit $?
fi
echo "missing Debian packages; run:" >&2
echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
