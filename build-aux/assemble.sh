#!/bin/sh
# Lay the fork over the pinned upstream tree:
#   pristine tarball + Debian's needed patches + patches/series  -> staging
#   staging + our files (at their QEMU paths)                    -> src
# The staging tree is rebuilt only when the pin or a patch changes; src is
# synchronised by content, so only files whose bytes changed get a new mtime
# and an incremental ninja rebuilds just what depends on them.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/build-aux/upstream.pin"
cache=${QEMU_GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-gmem}
staging=$cache/staging
src=$cache/src
# Every run checks the downloaded source against the pin.
"$repo/build-aux/fetch-upstream.sh" > /dev/null

# Our files: everything tracked (or new) under the QEMU-shaped top dirs,
# and there: a tracked file deleted from the work tree has left the overlay.
overlay_dirs="accel backends docs hw include qapi system target tests"
manifest=$cache/overlay.manifest
(cd "$repo" && { git ls-files --cached --others --exclude-standard -- $overlay_dirs 2>/dev/null ||
    find $overlay_dirs -type f 2>/dev/null; } |
    while read -r f; do [ ! -e "$f" ] || echo "$f"; done) | LC_ALL=C sort > "$manifest.new"

stamp=$( (cat "$repo/build-aux/upstream.pin" "$repo/patches/series";
          while read -r p; do
              case "$p" in ''|'#'*) continue ;; esac
              cat "$repo/patches/$p"
          done < "$repo/patches/series") | sha256sum | cut -d' ' -f1)

if [ "$(cat "$staging/.fork-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "assemble: preparing upstream tree with patches/series"
    rm -rf "$staging"
    "$repo/build-aux/unpack-upstream.sh" "$staging.tmp"
    while read -r p; do
        case "$p" in ''|'#'*) continue ;; esac
        if ! patch -d "$staging.tmp" -p1 -s -F0 -N < "$repo/patches/$p"; then
            echo "assemble: patches/$p does not apply to $version" >&2
            exit 1
        fi
    done < "$repo/patches/series"
    find "$staging.tmp" -name '*.orig' -delete
    echo "$stamp" > "$staging.tmp/.fork-stamp"
    mv "$staging.tmp" "$staging"
    rm -f "$manifest"
fi

mkdir -p "$src"
# Upstream side: only when the staging tree or the set of our files changed.
# Our paths are excluded (so they are neither overwritten nor deleted here);
# a file that left the overlay is no longer excluded and gets upstream's
# version back, or is deleted if upstream has none.
if ! cmp -s "$manifest.new" "$manifest" ||
   [ "$(cat "$src/.fork-stamp" 2>/dev/null)" != "$stamp" ]; then
    # Also our directories that upstream lacks, so --delete leaves them be.
    { sed 's|^|/|' "$manifest.new"
      sed -n 's|/[^/]*$||p' "$manifest.new" | sort -u | while read -r d; do
          [ -d "$staging/$d" ] || echo "/$d/"
      done; } > "$cache/overlay.exclude"
    rsync -rlc --delete --exclude-from="$cache/overlay.exclude" "$staging/" "$src/"
fi
# Files that left the overlay and that upstream lacks: rsync skips our own
# directories, so remove them here.
if [ -f "$manifest" ]; then
    LC_ALL=C comm -23 "$manifest" "$manifest.new" | while read -r f; do
        [ -e "$staging/$f" ] || rm -f "$src/$f"
    done
fi
# Our side: by content, every time (cheap: a few hundred files at most).
rsync -rlc --files-from="$manifest.new" "$repo/" "$src/"
mv "$manifest.new" "$manifest"
