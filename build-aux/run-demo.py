#!/usr/bin/python3
"""make run: boot the test guest under our qemu-system-x86_64 and report.

Part 1, host KVM: the guest fills all of its free RAM with an address
pattern and checks it; QEMU's side then reads the same RAM back through QMP
(pmemsave) and checks every word again, so both views of guest memory are
shown to agree.

Part 2, in the nested rig when it can run here (real
KVM_X86_SW_PROTECTED_VM): a sw-protected guest with two vCPUs converts
memory back and forth through the conversion manager; QEMU shows that the
guest's private data never appears in its own mapping, and the run ends
with the manager's statistics (HMP info guest-memfd).
"""
import os
import subprocess
import sys
import tempfile
import time

cache = os.environ['QEMU_GMEM_CACHE']
os.environ.setdefault('QEMU_BUILD_ROOT', os.path.join(cache, 'build'))
sys.path[:0] = [os.path.join(cache, 'src', 'python'),
                os.path.join(cache, 'src', 'tests', 'functional')]

from qemu.machine import QEMUMachine  # noqa: E402
from qemu_test.gmem_guest import (EXIT_PASSED, GuestLog,  # noqa: E402
                                  check_pattern, count_secret_words,
                                  guest_args, kvm_in_place_guest_memfd,
                                  parse_fields, parse_ranges,
                                  sw_protected_vm_args)

MEM_MIB = int(os.environ.get('DEMO_MEM_MIB', '512'))


def verdict(ok, status, results, extra=''):
    """The last line: what the guest said, not isa-debug-exit's code."""
    passed = sum(r == 'PASS' for r, _ in results.values())
    failed = [n for n, (r, _) in results.items() if r != 'PASS']
    if status is None:
        exited = 'QEMU did not exit'
    elif status == EXIT_PASSED:
        exited = 'the guest exited reporting success'
    else:
        exited = 'QEMU exit status %s' % status
    said = '%d guest tests passed%s' % (
        passed, ', failed: ' + ', '.join(failed) if failed else '')
    print('result: %s (%s; %s%s)' % ('PASS' if ok else 'FAIL', said, exited,
                                     extra))


def rig_part():
    """Runs inside the rig (tests/rig/run.sh)."""
    qemu = os.path.join(cache, 'build', 'qemu-system-x86_64')
    kernel = os.path.join(cache, 'guest', 'gmem-guest.elf')
    tests = 'convert_secret,convert_roundtrip_4k,convert_roundtrip_2m,' \
            'convert_smp,hold'
    with tempfile.TemporaryDirectory(prefix='qemu-gmem-run-') as tmp:
        debugcon = os.path.join(tmp, 'debugcon.log')
        vm = QEMUMachine(qemu, base_temp_dir=tmp)
        vm.set_machine('q35')
        vm.add_args('-accel', 'kvm', '-m', '128M', '-smp', '2',
                    *sw_protected_vm_args(),
                    *guest_args(kernel, debugcon,
                                tests + ' checkpoints=1 cpus=2 rounds=8'))
        vm.launch()
        log = GuestLog(debugcon)
        seen = []
        for _ in range(2):
            line = log.wait_for('gmem-checkpoint: convert_secret:', vm, 300)
            f = parse_fields(line.split(': ', 2)[2])
            base, size = int(f['base'], 0), int(f['size'], 0)
            seen.append((f['phase'], base, size,
                         count_secret_words(vm, tmp, base, size)))
            vm.cmd('inject-nmi')
        log.wait_for('gmem-checkpoint: hold:', vm, 300)
        stats = vm.cmd('human-monitor-command',
                       **{'command-line': 'info guest-memfd'})
        vm.cmd('inject-nmi')
        vm.wait(timeout=300)
        log.poll()
        status = vm.exitcode()

    print('guest side (sw-protected-vm, 2 vCPUs, KVM_HC_MAP_GPA_RANGE):')
    results = log.results()
    for name, (result, reason) in results.items():
        print('  %-22s %s%s' % (name, result,
                                ' (%s)' % reason if reason else ''))
        for info in log.info(name):
            print('  %-22s   %s' % ('', info))
    print()
    print('host side (QEMU reads the range through QMP pmemsave):')
    for phase, base, size, secret in seen:
        print('  range 0x%x +0x%x while %s: %d words of the guest\'s secret '
              'visible' % (base, size, phase, secret))
    print()
    print('conversion manager (HMP info guest-memfd):')
    for line in stats.strip().splitlines():
        print('  ' + line)
    print()
    ok = (status == EXIT_PASSED and results and
          all(r == 'PASS' for r, _ in results.values()) and
          not any(s[3] for s in seen))
    verdict(ok, status, results, '; %d words of the secret seen by QEMU'
            % sum(s[3] for s in seen))
    return 0 if ok else 1


def run_in_rig():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rig = os.path.join(repo, 'tests', 'rig')
    print()
    print('=== part 2: private memory in the nested rig ===')
    if subprocess.run([os.path.join(rig, 'setup.sh'), '-q'],
                      stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        print('skipped: the nested rig cannot be set up here '
              '(tests/rig/setup.sh failed; run it to see why)')
        return 0
    print('booting L1 (Debian kernel with KVM_X86_SW_PROTECTED_VM, under '
          'TCG); our QEMU runs inside it')
    sys.stdout.flush()
    env = dict(os.environ, QEMU_BUILD_ROOT='/tmp/gmem-run-build')
    # L1 sees the host's files, but has a /tmp of its own: the script runs
    # from a copy in the cache, so that a clone under /tmp works too.
    if os.path.realpath(cache).startswith('/tmp/'):
        print('skipped: the cache %s is under /tmp, which the rig\'s L1 '
              'replaces with its own; set QEMU_GMEM_CACHE elsewhere' % cache)
        return 0
    script = os.path.join(cache, 'run-demo.py')
    with open(os.path.abspath(__file__)) as src, open(script, 'w') as dst:
        dst.write(src.read())
    return subprocess.run([os.path.join(rig, 'run.sh'), '/usr/bin/python3',
                           script, '--rig-part'], env=env).returncode


def main():
    if '--rig-part' in sys.argv:
        return rig_part()
    print('=== part 1: the test guest on this machine ===')
    status = host_part()
    return run_in_rig() or status


def host_part():
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
    backend = []
    if accel == 'kvm' and kvm_in_place_guest_memfd():
        backend = ['-object', 'memory-backend-guest-memfd,id=m0,size=%dM'
                   % MEM_MIB, '-machine', 'memory-backend=m0,smm=off']
        ram = 'memory-backend-guest-memfd: one guest_memfd, mapped in place'
    else:
        ram = 'ordinary RAM (this KVM cannot map guest_memfd in place)'
    print('qemu-gmem demo: %s' % qemu)
    print('  machine q35, accel %s, %d MiB RAM, guest %s'
          % (accel, MEM_MIB, os.path.basename(kernel)))
    print('  guest RAM: ' + ram)

    with tempfile.TemporaryDirectory(prefix='qemu-gmem-run-') as tmp:
        debugcon = os.path.join(tmp, 'debugcon.log')
        vm = QEMUMachine(qemu, base_temp_dir=tmp)
        vm.set_machine('q35')
        vm.add_args('-accel', accel, '-m', '%dM' % MEM_MIB, *backend,
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
    verdict(ok, status, results, '; %d words mismatched in QEMU\'s view'
            % bad)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
