#!/bin/sh
# Install, from Debian's packages, what building and testing this branch
# needs. Safe to rerun: apt does nothing when everything is present.
set -eu
here=$(dirname "$0")
"$here/apt-setup.sh"

export DEBIAN_FRONTEND=noninteractive
# One line per apt step, with its time: a first run takes minutes.
apt_install() {
    t0=$(date +%s)
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    echo "deps: apt: $(echo "$@" | sed 's/^-t [^ ]* //' | cut -c1-60)... " \
         "($(($(date +%s) - t0)) s)"
}

# QEMU build: toolchain, meson >= 1.5 (bookworm-backports), pycotap for the
# configure step, and the libraries a KVM x86 system emulator with virtfs,
# slirp and the test devices wants.
apt_install build-essential ninja-build pkg-config ccache rsync xz-utils \
    dpkg-dev patch python3 python3-venv python3-setuptools python3-numpy \
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev libslirp-dev \
    libcap-ng-dev libattr1-dev libaio-dev libnuma-dev \
    flex bison
apt_install -t bookworm-backports meson python3-pycotap

# Firmware that the +ds source tarball does not ship (SeaBIOS, option ROMs
# such as pvh.bin and linuxboot_dma.bin, iPXE's NIC ROMs for q35's default
# e1000e), from Debian's packages.
apt_install seabios ipxe-qemu
apt_install -t bookworm-backports qemu-system-data

# Upstream's unit suite (make check's upstream tier): test-io-channel-command
# talks to socat, and skips without it.
apt_install socat

# Functional tests speak QMP through upstream's python/qemu package, which
# the assembled tree provides; they need nothing else from outside.
