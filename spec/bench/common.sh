# Sourced by the bench scripts (`. "$(dirname "${BASH_SOURCE[0]}")/common.sh"`): HERE (this
# folder), ROOT (the checkout), OUT (build/bench), LUA and CC with their defaults (lua5.4,
# gcc), and die MESSAGE, which prints it after the script's name and exits 1.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/build/bench"
LUA="${LUA:-lua5.4}"
CC="${CC:-gcc}"
die() { echo "${0##*/}: $*" >&2; exit 1; }
