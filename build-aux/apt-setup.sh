#!/bin/sh
# Make the Debian suites this project needs reachable through apt:
# bookworm-backports (meson >= 1.5), trixie and sid (binaries and deb-src for
# the pinned qemu source). The mirror is the one this machine's own apt
# configuration already uses for its main Debian suite; no host name is
# written anywhere in the repository.
set -eu

list=/etc/apt/sources.list.d/qemu-gmem-extra.sources
stamp=/var/lib/apt/qemu-gmem-extra.updated

debian_mirror() {
    # deb822 files first, then one-line format.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] && [ "$f" != "$list" ] || continue
        awk '
            /^[[:space:]]*$/ { if (uri != "" && suite ~ /(^| )(bookworm|trixie|sid)( |$)/) { print uri; exit } uri = ""; suite = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { $1 = ""; suite = $0 }
            END { if (uri != "" && suite ~ /(^| )(bookworm|trixie|sid)( |$)/) print uri }
        ' "$f"
    done | head -n 1 | grep . && return 0
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $3 ~ /^(bookworm|trixie|sid)$/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' |
        head -n 1 | grep .
}

if [ ! -e "$list" ]; then
    mirror=$(debian_mirror) || {
        echo "apt-setup: no Debian mirror found in this machine's apt configuration" >&2
        exit 1
    }
    key=/usr/share/keyrings/debian-archive-keyring.gpg
    cat > "$list.tmp" <<EOT
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: $key

Types: deb deb-src
URIs: $mirror
Suites: sid
Components: main
Signed-By: $key

Types: deb-src
URIs: $mirror
Suites: trixie bookworm
Components: main
Signed-By: $key
EOT
    mv "$list.tmp" "$list"
    rm -f "$stamp"
fi

# Only what we ask for by suite comes from sid (or trixie): below the
# priority of anything installed (100), so nothing already on the machine,
# from backports included, is ever "upgraded" to sid on its own.
prefs=/etc/apt/preferences.d/qemu-gmem-extra
cat > "$prefs.tmp" <<EOT
Package: *
Pin: release n=sid
Pin-Priority: 50

Package: *
Pin: release n=trixie
Pin-Priority: 50
EOT
if cmp -s "$prefs.tmp" "$prefs"; then
    rm -f "$prefs.tmp"
else
    mv "$prefs.tmp" "$prefs"
fi

# Our set-up steps may run apt at the same time (make check's rig set-up
# beside a harness installing clang): the second waits for the first's
# dpkg lock instead of failing at once.
conf=/etc/apt/apt.conf.d/90qemu-gmem-lock
echo 'DPkg::Lock::Timeout "600";' > "$conf.tmp"
if cmp -s "$conf.tmp" "$conf"; then
    rm -f "$conf.tmp"
else
    mv "$conf.tmp" "$conf"
fi

# One apt-get update per day is enough for a build that pins its versions.
if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
    apt-get update -qq
    touch "$stamp"
fi
