#!/usr/bin/python3
"""make run: boot the test guest under our qemu-system-x86_64 and report.

The guest fills all of its free RAM with an address pattern and checks it;
QEMU's side then reads the same RAM back through QMP (pmemsave) and checks
every word again, so both views of guest memory are shown to agree.
"""
import os
import sys
import tempfile
import time

cache = os.environ['QEMU_GMEM_CACHE']
os.environ.setdefault('QEMU_BUILD_ROOT', os.path.join(cache, 'build'))
sys.path[:0] = [os.path.join(cache, 'src', 'python'),
                os.path.join(cache, 'src', 'tests', 'functional')]

from qemu.machine import QEMUMachine  # noqa: E402
from qemu_test.gmem_guest import (EXIT_PASSED, GuestLog,  # noqa: E402
                                  check_pattern, guest_args, parse_fields,
                                  parse_ranges)

MEM_MIB = int(os.environ.get('DEMO_MEM_MIB', '512'))


def main():
    qemu = os.path.join(cache, 'build', 'qemu-system-x86_64')
    kernel = os.path.join(cache, 'guest', 'gmem-guest.elf')
    if os.access('/dev/kvm', os.R_OK | os.W_OK):
        # A software /dev/kvm runs guest code slowly: one word per page
        # still touches and checks every page.
        accel, stride = 'kvm', int(os.environ.get('DEMO_STRIDE', '4096'))
    else:
        accel, stride = 'tcg', int(os.environ.get('DEMO_STRIDE', '8'))
        print('notice: /dev/kvm is not usable here; running under TCG '
              '(software emulation) instead')
    print('qemu-gmem demo: %s' % qemu)
    print('  machine q35, accel %s, %d MiB RAM, guest %s'
          % (accel, MEM_MIB, os.path.basename(kernel)))

    with tempfile.TemporaryDirectory(prefix='qemu-gmem-run-') as tmp:
        debugcon = os.path.join(tmp, 'debugcon.log')
        vm = QEMUMachine(qemu, base_temp_dir=tmp)
        vm.set_machine('q35')
        vm.add_args('-accel', accel, '-m', '%dM' % MEM_MIB,
                    *guest_args(kernel, debugcon,
                                'ram_map,ram_pattern,ram_inversions '
                                'checkpoints=1 stride=%d' % stride))
        start = time.monotonic()
        vm.launch()
        log = GuestLog(debugcon)
        line = log.wait_for('gmem-checkpoint: ram_pattern:', vm, timeout=300)
        guest_time = time.monotonic() - start
        fields = parse_fields(line.split(': ', 2)[2])
        seed, ranges = int(fields['seed'], 0), parse_ranges(fields['ranges'])
        t0 = time.monotonic()
        checked, bad, first = check_pattern(vm, tmp, seed, ranges, stride)
        host_time = time.monotonic() - t0
        vm.cmd('inject-nmi')
        vm.wait(timeout=300)
        log.poll()
        status = vm.exitcode()

    results = log.results()
    print()
    print('guest side (test guest, output on debugcon port 0xe9):')
    for name, (result, reason) in results.items():
        print('  %-16s %s%s' % (name, result, ' (%s)' % reason if reason else ''))
        for info in log.info(name):
            print('  %-16s   %s' % ('', info))
    print('  boot + fill + verify until the checkpoint: %.2f s' % guest_time)
    print()
    print('host side (QEMU, QMP pmemsave of the same ranges):')
    print('  ranges  %s' % ', '.join('0x%x-0x%x' % r for r in ranges))
    print('  checked %d MiB (one word every %d bytes) in %.2f s: '
          '%d mismatched words%s'
          % (checked >> 20, stride, host_time, bad,
             '' if first is None else ', first at 0x%x' % first))
    print()
    ok = (status == EXIT_PASSED and bad == 0 and results and
          all(r == 'PASS' for r, _ in results.values()))
    print('result: %s (QEMU exit status %s)' % ('PASS' if ok else 'FAIL',
                                                 status))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
