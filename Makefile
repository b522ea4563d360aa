# qemu-gmem: a QEMU fork branch for confidential-VM memory, built as an
# overlay on a pinned upstream release. See README.md.
#
#   make run     build what is missing, boot the test guest, print a report
#   make check   unit and functional tests, the nested rig tier included;
#                ends with "N passed, N failed, N skipped"
#   make check-rig  only the nested rig tier
#   make check-storm  the random-request storm in the rig (long)
#   make bench   conversion rates in the nested rig, side by side
#   make fuzz    the libFuzzer harnesses, FUZZ_TIME seconds each (60),
#                and the TSan harness (make tsan: it alone, TSAN_TIME s)
#   make check-libvirt  the example domains under a real libvirtd
#   make check-upstream  QEMU's unit and qtest-x86_64 suites on our build
#                and on pristine 10.2.2, side by side
#   make build   just build qemu-system-x86_64 (the test guest, the launch
#                stand-in)
#   make install / make uninstall   PREFIX (/usr/local) and DESTDIR, as
#                upstream QEMU's

CACHE ?= $(or $(QEMU_GMEM_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/qemu-gmem)
export QEMU_GMEM_CACHE := $(CACHE)
GUEST := $(CACHE)/guest/gmem-guest.elf

all: build

# apt runs again only when the install scripts change.
DEPS_STAMP := $(CACHE)/deps.stamp
$(DEPS_STAMP): build-aux/install-deps.sh build-aux/apt-setup.sh
	@build-aux/install-deps.sh
	@mkdir -p $(CACHE) && touch $@

deps: $(DEPS_STAMP)

build: deps
	@build-aux/build.sh
	@$(MAKE) --no-print-directory -s -C tests/guest O=$(CACHE)/guest
	@$(MAKE) --no-print-directory -s -C tests/launch-standin \
		O=$(CACHE)/launch-standin QEMU_SRC=$(CACHE)/src

run: build
	@build-aux/run-demo.py

check: build
	@build-aux/check.sh

# Conversions per second: bare ioctls, upstream's path, the manager.
bench: build
	@build-aux/bench.sh

# The gmem layer's libFuzzer harnesses (tests/fuzz), FUZZ_TIME s each,
# then the TSan harness (tests/tsan), TSAN_TIME s (120).
fuzz: build
	@status=0; build-aux/fuzz.sh || status=1; \
	build-aux/tsan.sh || status=1; exit $$status

# The conversion manager under ThreadSanitizer, TSAN_TIME s (120).
tsan: build
	@build-aux/tsan.sh

install: build
	@build-aux/install.sh install

uninstall:
	@build-aux/install.sh uninstall

# Upstream's own suites, ours beside pristine 10.2.2 (SUITES= to choose).
check-upstream: build
	@build-aux/check-upstream.sh

# A real libvirtd (Debian's 11.3) starts our installed QEMU.
check-libvirt: build
	@tests/libvirt/check_libvirt.py

# Only the nested-rig tier (real KVM_X86_SW_PROTECTED_VM under TCG).
check-rig: build
	@build-aux/check.sh gmem_rig

# The 4-vCPU random-request storm, on the rig's full kernel (long).
check-storm: build
	@build-aux/check-storm.sh

.PHONY: all deps build run check check-rig check-storm check-upstream check-libvirt bench fuzz tsan \
	install uninstall
