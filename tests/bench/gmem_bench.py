#!/usr/bin/env python3
#
# make bench: private/shared conversion performance, side by side, in one
# run inside the nested rig (real KVM_X86_SW_PROTECTED_VM under TCG).
#
#   bare           gmem-convert-bare: the KVM work alone, no vCPU (the
#                  physical limit of a conversion on this kernel)
#   legacy         the test guest through QEMU 10.2.2's conversion path
#   manager        the test guest through the conversion manager
#                  (discard=sync, or async)
#
# and what a memslot change costs the rest of the guest under each
# -accel kvm,memslot-zap= policy: KVM's page faults (query-stats pf_taken)
# and the host's clock for the change plus a re-touch of the guest's RAM.
#
# Guest-driven rates are timed by the host between two checkpoints around
# the guest's loop, so they include the hypercall exit and re-entry of
# every request: everything a guest pays. The manager's own cost per
# conversion comes from query-guest-memfd's busy-ns.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import os
import re
import subprocess
import sys
import tempfile
import time

from gmem_scale import scale_rows
from qemu.machine import QEMUMachine
from qemu_test.gmem_guest import (EXIT_PASSED, GuestLog, guest_args,
                                  meminfo, parse_fields, parse_ranges,
                                  set_hugetlb_pool, slot_retouch,
                                  slot_retouch_args, sw_protected_vm_args,
                                  vfio_edu)

CHUNKS = [(4096, int(os.environ.get('BENCH_ROUNDS_4K', '500'))),
          (64 << 10, int(os.environ.get('BENCH_ROUNDS_64K', '300'))),
          (2 << 20, int(os.environ.get('BENCH_ROUNDS_2M', '100')))]
# The kernel calls of a conversion, as query-guest-memfd names them.
CALLS = ('set-attributes', 'discard-shared', 'discard-private')


def chunk_name(chunk):
    return '%dMiB' % (chunk >> 20) if chunk >= 1 << 20 else \
        '%dKiB' % (chunk >> 10)
ACCEPT_MEM_MIB = int(os.environ.get('BENCH_ACCEPT_MIB', '512'))
FOOTPRINT_MIB = int(os.environ.get('BENCH_FOOTPRINT_MIB', '256'))
RETOUCH_MIB = int(os.environ.get('BENCH_RETOUCH_MIB', '256'))


def bare(tool, chunk, rounds, mode='vcpu'):
    """
    gmem-convert-bare's fields (per_second, us per call kind, guest_us):
    @mode vcpu (a vCPU exits for each conversion, as the bench guest does),
    touch (and writes each page after it) or idle (no vCPU).
    """
    out = subprocess.run([tool, str(chunk), str(rounds), mode], check=True,
                         capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (w.split('=') for w in out.split()[1:])}


def per_call_us(stats):
    """{call: (calls per request, us per call)} from query-guest-memfd."""
    out = {}
    for c in stats['kernel-calls']:
        if c['call'] in CALLS:
            out[c['call']] = (c['calls'] / stats['requests'],
                              c['ns'] / 1000 / max(c['calls'], 1))
    return out


def guest_run(qemu, kernel, tmp, qemu_args, command_line, host_side, what):
    """
    Boot the test guest with @qemu_args and @command_line, run
    host_side(vm, log) while it holds at its checkpoints, then let it
    finish; returns what host_side returned. Raises if the guest failed.
    """
    debugcon = os.path.join(tmp, 'debugcon-%s.log' % time.monotonic_ns())
    vm = QEMUMachine(qemu, base_temp_dir=tmp)
    vm.set_machine('q35')
    vm.add_args(*qemu_args, *guest_args(kernel, debugcon, command_line))
    vm.launch()
    try:
        log = GuestLog(debugcon)
        result = host_side(vm, log)
        vm.cmd('inject-nmi')
        vm.wait(timeout=60)
    finally:
        vm.shutdown()
    if vm.exitcode() != EXIT_PASSED:
        raise RuntimeError('%s: guest failed:\n%s'
                           % (what, '\n'.join(log.lines)))
    return result


def timed_guest_loop(qemu, kernel, accel_opts, test, args, mem, tmp,
                     extra=()):
    """
    Boot the guest with @test, time the host clock between its two
    checkpoints; return (seconds, query-guest-memfd at the end).
    """
    def host_side(vm, log):
        log.wait_for('gmem-checkpoint: %s: phase=start' % test, vm, 300)
        t0 = time.monotonic()
        vm.cmd('inject-nmi')
        log.wait_for('gmem-checkpoint: %s: phase=end' % test, vm, 900)
        seconds = time.monotonic() - t0
        return seconds, vm.cmd('query-guest-memfd')

    return guest_run(qemu, kernel, tmp,
                     ('-accel', 'kvm,' + accel_opts, '-m', mem,
                      *sw_protected_vm_args(), *extra),
                     '%s %s checkpoints=1' % (test, args), host_side,
                     '%s %s' % (accel_opts, test))


def interleaved(configs, run):
    """
    run(config) -> (seconds, extra), BENCH_REPEAT times (default 3) for
    each config, the configs taken in turn so that a slow spell of the
    host hits them alike; the median run of each: {config: (s, extra)}.
    """
    repeat = int(os.environ.get('BENCH_REPEAT', '3'))
    runs = {c: [] for c in configs}
    for _ in range(repeat):
        for c in configs:
            runs[c].append(run(c))
    return {c: sorted(r, key=lambda x: x[0])[len(r) // 2]
            for c, r in runs.items()}


def meminfo_kib(field):
    return meminfo().get(field, 0)


def ram_mapping_kib(pid, mem_mib):
    """Resident KiB of QEMU's anonymous mapping of guest RAM."""
    best, size, anon = 0, 0, False
    with open('/proc/%d/smaps' % pid) as f:
        for line in f:
            m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)', line)
            if m:
                size = int(m[2], 16) - int(m[1], 16)
                anon = m[3] == '0'
            elif (line.startswith('Rss:') and anon and
                  size >= mem_mib << 20):
                best = max(best, int(line.split()[1]))
    return best


def hugetlb_in_use_kib():
    """2 MiB pages of L1's pool in use (allocated, not just reserved)."""
    return (meminfo_kib('HugePages_Total') -
            meminfo_kib('HugePages_Free')) * meminfo_kib('Hugepagesize')


def footprint(qemu, kernel, args, mem_mib, tmp, hugetlb=False):
    """
    Boot the test guest, let it touch every page of its free RAM (for
    confidential guests: while shared, then again after accepting it
    all); return (seconds until the guest's first line, MiB of host
    memory: QEMU's anonymous memory plus the guest_memfd pages the kernel
    allocated meanwhile, MiB of that which holds guest RAM: the RAM
    mapping plus private guest_memfd pages, MiB the guest touched).
    With @hugetlb the RAM mapping is of huge pages from L1's pool, which
    RssAnon and Rss do not count: the pool's pages in use count instead.
    """
    debugcon = os.path.join(tmp, 'debugcon-fp-%s.log' % time.monotonic_ns())
    # Confidential guests first fill memory while it is shared, then
    # accept it all and fill it again: the shared copies are stale then.
    tests = 'ram_inversions,accept_all,ram_pattern' \
        if 'sw-protected' in str(args) else 'ram_pattern'
    unevictable = meminfo_kib('Unevictable')
    huge = hugetlb_in_use_kib()
    vm = QEMUMachine(qemu, base_temp_dir=tmp)
    vm.set_machine('q35')
    vm.add_args('-m', '%dM' % mem_mib, *args,
                *guest_args(kernel, debugcon,
                            '%s checkpoints=1 stride=4096' % tests))
    t0 = time.monotonic()
    vm.launch()
    try:
        log = GuestLog(debugcon)
        log.expect('gmem-guest: start', vm, 300)
        boot = time.monotonic() - t0
        while True:
            line = log.expect('gmem-checkpoint:', vm, 900)
            if line.startswith('gmem-checkpoint: ram_pattern:'):
                break
            vm.cmd('inject-nmi')
        deadline = time.monotonic() + 30
        while (vm.cmd('query-guest-memfd')['discard-backlog'] and
               time.monotonic() < deadline):
            time.sleep(0.05)
        with open('/proc/%d/status' % vm.get_pid()) as f:
            anon = int(re.search(r'^RssAnon:\s+(\d+) kB', f.read(), re.M)[1])
        gmem = max(meminfo_kib('Unevictable') - unevictable, 0)
        ram = ram_mapping_kib(vm.get_pid(), mem_mib)
        if hugetlb:
            ram = hugetlb_in_use_kib() - huge
            anon += ram
        touched = sum(end - start for start, end in parse_ranges(
            parse_fields(line.split(': ', 2)[2])['ranges']))
        vm.cmd('inject-nmi')
        vm.wait(timeout=60)
    finally:
        vm.shutdown()
    # In place, guest RAM is all guest_memfd pages; KVM maps them for the
    # guest without QEMU's mapping, whose Rss may not count them.
    in_place = 'memory-backend-guest-memfd' in ' '.join(args)
    guest_ram = gmem if in_place else ram + gmem
    return boot, (anon + gmem) / 1024, guest_ram / 1024, touched / (1 << 20)


def memslot_retouch(qemu, kernel, policy, confidential, tmp):
    """
    slot_retouch under memslot-zap=@policy: (faults, seconds) for deleting
    and re-adding ivshmem's memslot, then re-touching RETOUCH_MIB MiB.
    """
    qemu_args, command_line = slot_retouch_args(policy, RETOUCH_MIB,
                                                confidential)
    faults, seconds, _ = guest_run(
        qemu, kernel, tmp, qemu_args, command_line,
        lambda vm, log: slot_retouch(vm, log, 900),
        'memslot-zap=' + policy)
    return faults, seconds


def host_cores():
    """The host's cores under L1's CPUs (tests/rig/run.sh passes RIG_*)."""
    return int(os.environ.get('RIG_HOST_CORES', '0'))


def save_results(results):
    """For the chart: JSON in $BENCH_RESULTS, if set."""
    path = os.environ.get('BENCH_RESULTS')
    if path:
        with open(path, 'w') as f:
            json.dump(results, f, indent=1, sort_keys=True)


def kernel_test(tool, tmp):
    """Row 9: the kernel's private_mem_conversions_test, timed and counted."""
    print()
    print('9. the kernel\'s own reference workload, private_mem_conversions_test '
          '(Debian linux-source-7.2, tools/testing/selftests/kvm): seconds '
          'per run, and the calls of one run (strace)')
    if not os.access(tool, os.X_OK):
        print('   skipped: not built (build-aux/bench.sh builds it)')
        return
    print('%-6s %9s %14s %11s %9s' % ('vCPUs', 'seconds', 'set-attributes',
                                      'fallocate', 'KVM_RUN'))
    for cpus in (1, 4):
        t0 = time.monotonic()
        subprocess.run([tool, '-n', str(cpus)], check=True,
                       capture_output=True)
        seconds = time.monotonic() - t0
        trace = os.path.join(tmp, 'kst.strace')
        subprocess.run(['strace', '-f', '-qq', '-e', 'trace=ioctl,fallocate',
                        '-o', trace, tool, '-n', str(cpus)], check=True,
                       capture_output=True)
        with open(trace) as f:
            lines = f.read().splitlines()
        # strace 6.1 names KVM_RUN; KVM_SET_MEMORY_ATTRIBUTES is newer.
        count = {k: sum(k in line for line in lines) for k in
                 ('0xae, 0xd2, 0x20', 'fallocate(', 'KVM_RUN')}
        print('%-6d %9.2f %14d %11d %9d' % (
            cpus, seconds, count['0xae, 0xd2, 0x20'], count['fallocate('],
            count['KVM_RUN']))
        sys.stdout.flush()
    print('   Its guest checks the data of every conversion (2 MiB memcmp '
          'and memset under nested TCG) and stops for each check, so its '
          'time is not a conversion rate; rows 1 and 2b are.')


def want(row):
    """BENCH_ROWS=1,4 runs rows 1 (with 2) and 4 only; all by default."""
    rows = os.environ.get('BENCH_ROWS')
    return not rows or str(row) in rows.split(',')


def main():
    cache = os.environ['QEMU_GMEM_CACHE']
    qemu = os.path.join(cache, 'build', 'qemu-system-x86_64')
    kernel = os.path.join(cache, 'guest', 'gmem-guest.elf')
    tool = os.path.join(cache, 'rig', 'gmem-convert-bare')
    legacy = 'guest-memfd-conversion=legacy'
    manager = 'guest-memfd-conversion=manager,guest-memfd-discard=sync'
    manager_async = 'guest-memfd-conversion=manager,guest-memfd-discard=async'

    print('gmem bench, nested rig (KVM_X86_SW_PROTECTED_VM under TCG)')
    print()
    results = {}
    with tempfile.TemporaryDirectory(prefix='gmem-bench-') as tmp:
        if want(1):
            print('1. conversions per second (a round trip is 2 conversions; '
                  'each the median of BENCH_REPEAT=%s runs, taken in turn)'
                  % os.environ.get('BENCH_REPEAT', '3'))
            print('%-6s %10s %10s %10s %10s %9s %9s %9s' % (
                'chunk', 'bare', 'legacy', 'manager', 'mgr-async', 'mgr/leg',
                'async/leg', 'async/mgr'))
            cost = []
            for chunk, rounds in CHUNKS:
                args = 'chunk=%d count=%d' % (chunk, rounds)
                floor = {mode: bare(tool, chunk, rounds, mode)
                         for mode in ('vcpu', 'touch', 'idle')}
                b = floor['vcpu']['per_second']
                paths = {'legacy': legacy, 'manager': manager,
                         'async': manager_async}
                median = interleaved(paths, lambda name: timed_guest_loop(
                    qemu, kernel, paths[name], 'convert_bench', args, '256M',
                    tmp))
                rate = {}
                for name in paths:
                    rate[name] = 2 * rounds / median[name][0]
                    results.setdefault(name, {})[chunk] = rate[name]
                stats = median['manager'][1]
                _, touched = timed_guest_loop(qemu, kernel, manager,
                                              'convert_bench',
                                              args + ' touch=1', '256M', tmp)
                cost.append((chunk, stats, per_call_us(stats),
                             per_call_us(touched), floor))
                results.setdefault('bare', {})[chunk] = b
                print('%-6s %10.1f %10.1f %10.1f %10.1f %9.3f %9.3f %9.3f' % (
                    chunk_name(chunk), b, rate['legacy'],
                    rate['manager'], rate['async'],
                    rate['manager'] / rate['legacy'],
                    rate['async'] / rate['legacy'],
                    rate['async'] / rate['manager']))
                sys.stdout.flush()

            print()
            print('2. cost of one conversion inside QEMU (manager, sync) '
                  'against its kernel calls')
            print('%-6s %11s %11s %11s %10s' % (
                'chunk', 'manager us', 'kernel us', 'own us', 'mgr/kernel'))
            for chunk, stats, calls, _, _ in cost:
                n = stats['requests']
                mgr_us = stats['busy-ns'] / n / 1000
                kernel_us = sum(per_req * us for per_req, us in
                                calls.values())
                print('%-6s %11.2f %11.2f %11.2f %10.3f' % (
                    chunk_name(chunk), mgr_us, kernel_us, mgr_us - kernel_us,
                    mgr_us / kernel_us))
            print()
            print('2b. each kernel call of a conversion, us per call: in the '
                  'running VM (manager, sync), in the bare harness with a '
                  'vCPU that exits for each conversion (bare) and with none '
                  '(idle); "touched": the guest and the harness write each '
                  'page after each conversion')
            print('%-6s %-16s %7s %8s %8s %8s %8s %9s %8s %8s' % (
                'chunk', 'call', 'per req', 'VM us', 'bare us', 'idle us',
                'VM/bare', 'bare/idle', 'touched', 'bare'))
            for chunk, _, calls, touched, floor in cost:
                for call in CALLS:
                    key = call.replace('-', '_') + '_us'
                    per_req, us = calls.get(call, (0, 0))
                    t_us = touched.get(call, (0, 0))[1]
                    b_us, i_us, bt_us = (floor[m][key] for m in
                                         ('vcpu', 'idle', 'touch'))
                    print('%-6s %-16s %7.2f %8.2f %8.2f %8.2f %8.3f %9.3f '
                          '%8.2f %8.2f' % (
                              chunk_name(chunk), call, per_req, us, b_us,
                              i_us, us / b_us if b_us else 0,
                              b_us / i_us if i_us else 0, t_us, bt_us))
            sys.stdout.flush()

        if want(8):
            print()
            print('8. scaling: 4 KiB conversions per second in all, with 1, '
                  '2 and 4 vCPUs converting disjoint windows at once (L1 has '
                  '%s CPUs on %d host cores; L0: %s-threaded TCG)' % (
                      os.cpu_count(), host_cores(),
                      os.environ.get('RIG_TCG_THREAD') or 'multi'))
            print('%-6s %10s %10s %10s %9s %9s' % (
                'vCPUs', 'legacy', 'manager', 'mgr-async', 'mgr/leg',
                'async/mgr'))
            rounds = CHUNKS[0][1]
            for cpus in (1, 2, 4):
                args = 'chunk=4096 count=%d cpus=%d' % (rounds // cpus, cpus)
                paths = {'legacy': legacy, 'manager': manager,
                         'async': manager_async}
                median = interleaved(paths, lambda name: timed_guest_loop(
                    qemu, kernel, paths[name], 'convert_bench', args, '256M',
                    tmp, ('-smp', str(cpus))))
                rate = {}
                for name in paths:
                    rate[name] = 2 * (rounds // cpus) * cpus / median[name][0]
                    results.setdefault('scaling-' + name, {})[cpus] = \
                        rate[name]
                print('%-6d %10.1f %10.1f %10.1f %9.3f %9.3f' % (
                    cpus, rate['legacy'], rate['manager'], rate['async'],
                    rate['manager'] / rate['legacy'],
                    rate['async'] / rate['manager']))
                sys.stdout.flush()

        if want(9):
            kernel_test(os.path.join(cache, 'rig', 'selftests',
                                     'private_mem_conversions_test'), tmp)

        if want(3):
            print()
            print('3. boot-time accept: %d MiB guest makes all free RAM '
                  'private in 2 MiB steps' % ACCEPT_MEM_MIB)
            print('%-34s %10s %12s' % ('path', 'seconds', 'vs legacy'))
            paths = {'legacy (pre-faults each range)': legacy,
                     'manager, prefault=off (default)': manager,
                     'manager, prefault=on':
                     manager + ',guest-memfd-prefault=on',
                     'manager, discard=async': manager_async}
            median = interleaved(paths, lambda name: timed_guest_loop(
                qemu, kernel, paths[name], 'accept_all', '',
                '%dM' % ACCEPT_MEM_MIB, tmp))
            base = None
            for name in paths:
                seconds = median[name][0]
                base = base or seconds
                print('%-34s %10.3f %11.2fx' % (name, seconds, base / seconds))
            sys.stdout.flush()
        if want(4):
            print()
            print('4. footprint: a %d MiB guest touches every page of its '
                  'free RAM (confidential guests: first while shared, then '
                  'again after accepting it all)' % FOOTPRINT_MIB)
            print('%-46s %7s %9s %9s %8s %6s' % ('guest RAM', 'boot s',
                                                'host MiB', 'RAM MiB',
                                                'touched', 'ratio'))
            inplace = ['-object', 'memory-backend-guest-memfd,id=m0,size=%dM'
                       % FOOTPRINT_MIB,
                       '-machine', 'memory-backend=m0,smm=off']
            cgs = sw_protected_vm_args()
            for name, args in (
                    ('plain anonymous RAM', ['-accel', 'kvm']),
                    ('in place: memory-backend-guest-memfd',
                     ['-accel', 'kvm', *inplace]),
                    ('split (sw-protected, all private, discard=sync)',
                     ['-accel', 'kvm,guest-memfd-discard=sync', *cgs]),
                    ('split (sw-protected, all private, discard=none)',
                     ['-accel', 'kvm,guest-memfd-discard=none', *cgs])):
                boot, mib, ram, touched = footprint(qemu, kernel, args,
                                                    FOOTPRINT_MIB, tmp)
                print('%-46s %7.2f %9.0f %9.1f %8.1f %6.3f' %
                      (name, boot, mib, ram, touched, ram / touched))
                sys.stdout.flush()
        if want(5):
            print()
            print('5. memslot change (ivshmem BAR 2 off and on), then '
                  're-touch of %d MiB (%d pages of 4 KiB), per memslot-zap '
                  'policy' % (RETOUCH_MIB, RETOUCH_MIB << 8))
            print('%-34s %9s %9s %9s %9s %9s' % (
                'guest', 'all flt', 'tgt flt', 'all s', 'tgt s', 'all/tgt s'))
            for name, confidential in (('ordinary VM (type 0)', False),
                                       ('sw-protected-vm, half private',
                                        True)):
                (fa, sa), (ft, st) = (
                    memslot_retouch(qemu, kernel, policy, confidential, tmp)
                    for policy in ('all', 'targeted'))
                print('%-34s %9d %9d %9.3f %9.3f %9.2f' % (
                    name, fa, ft, sa, st, sa / st))
                sys.stdout.flush()
            edu = vfio_edu()
        if want(6):
            print()
            print('6. 4 KiB conversions per second with an assigned device '
                  '(edu through vfio-pci: each conversion also unmaps or maps '
                  'a page in the IOMMU)')
            if not edu:
                print('   skipped: no edu bound to vfio-pci (the rig with '
                      'RIG_VFIO=1)')
            else:
                rounds = CHUNKS[0][1]
                args = 'chunk=4096 count=%d' % rounds
                print('%-10s %12s %12s %10s' % ('path', 'no device', 'device',
                                                'dev/none'))
                for name, opts in (('legacy', legacy), ('manager', manager)):
                    rate = []
                    for extra in ((), ('-device', 'vfio-pci,host=' + edu)):
                        seconds, _ = timed_guest_loop(qemu, kernel, opts,
                                                      'convert_bench', args,
                                                      '128M', tmp, extra)
                        rate.append(2 * rounds / seconds)
                    print('%-10s %12.1f %12.1f %10.3f' % (
                        name, rate[0], rate[1], rate[1] / rate[0]))
                    sys.stdout.flush()
        if want(7):
            print()
            print('7. footprint on huge pages: the same %d MiB sw-protected '
                  'guest with its shared side on 2 MiB pages '
                  '(memory-backend-memfd,hugetlb=on), discard=sync'
                  % FOOTPRINT_MIB)
            print('%-46s %7s %9s %9s %8s %6s' % ('huge page policy', 'boot s',
                                                'host MiB', 'RAM MiB',
                                                'touched', 'ratio'))
            set_hugetlb_pool(FOOTPRINT_MIB // 2 + 16)
            huge = ['-object', 'memory-backend-memfd,id=ram0,size=%dM,'
                    'hugetlb=on,hugetlbsize=2M' % FOOTPRINT_MIB,
                    '-machine', 'memory-backend=ram0', *cgs]
            try:
                for name, opts in (
                        ('given back once private (default)', ''),
                        ('kept: guest-memfd-hugetlb-discard=off',
                         ',guest-memfd-hugetlb-discard=off'),
                        ('kept: QEMU 10.2.2 (legacy)', ',' + legacy)):
                    boot, mib, ram, touched = footprint(
                        qemu, kernel, ['-accel', 'kvm' + opts, *huge],
                        FOOTPRINT_MIB, tmp, hugetlb=True)
                    print('%-46s %7.2f %9.0f %9.1f %8.1f %6.3f' %
                          (name, boot, mib, ram, touched, ram / touched))
                    sys.stdout.flush()
            finally:
                set_hugetlb_pool(0)
        # Rows 11-13: guests of 1 to 64 GiB (tests/bench/gmem_scale.py).
        scale_rows(want, qemu, kernel, tmp, results)
    save_results(results)
    print()
    print('bare: KVM_SET_MEMORY_ATTRIBUTES plus discarding the stale side, '
          'issued directly, with a vCPU that exits to ask for each '
          'conversion as the bench guest does (a port write instead of a '
          'hypercall). Guest-driven rows pay a guest exit and re-entry per '
          'request, which nested TCG makes expensive.')
    print('kernel: the same calls timed inside the manager (query-guest-'
          'memfd kernel-calls), on the running VM; mgr/kernel is the '
          'manager\'s own overhead over them.')
    print('footprint: host MiB is all of QEMU\'s anonymous memory plus '
          'guest_memfd pages; RAM MiB only what holds guest RAM (the RAM '
          'mapping plus private pages); ratio = RAM MiB / touched '
          '(target <= 1.02; firmware and the guest image are not in '
          '"touched"). On huge pages, RAM MiB is the pool\'s pages in use '
          'plus private pages.')
    print('memslot change: flt is KVM\'s pf_taken over the change and the '
          're-touch; s the host\'s clock over both. KVM zaps the whole VM '
          'only for ordinary VMs: for confidential VM types the two '
          'policies are the same.')
    print('device: VFIO maps guest_memfd RAM in 4 KiB pieces, one type1 '
          'mapping per shared page, so conversions never need more '
          'mappings than the guest had at start (docs/system/'
          'device-assignment.rst).')
    return 0


if __name__ == '__main__':
    sys.exit(main())
