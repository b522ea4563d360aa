#!/bin/sh
# Download the pinned upstream QEMU source package into the cache and check
# it against the pin. Prints the download directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/upstream.pin"
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
dl=$cache/downloads
mkdir -p "$dl"

verify() { # file sha256
    actual=$(sha256sum "$dl/$1" | cut -d' ' -f1)
    if [ "$actual" != "$2" ]; then
        echo "fetch-upstream: SHA-256 mismatch for $1" >&2
        echo "  expected $2" >&2
        echo "  got      $actual" >&2
        echo "  (pin: build-aux/upstream.pin; delete $dl/$1 to download again)" >&2
        exit 1
    fi
}

if [ ! -s "$dl/$orig" ] || [ ! -s "$dl/$debian" ]; then
    "$here/apt-setup.sh"
    t0=$(date +%s)
    echo "fetch-upstream: downloading Debian's $package $version source" >&2
    (cd "$dl" && apt-get source --download-only -qq "$package=$version" >&2)
    echo "fetch-upstream: downloaded ($(($(date +%s) - t0)) s)" >&2
fi
verify "$orig" "$orig_sha256"
verify "$debian" "$debian_sha256"
echo "$dl"
