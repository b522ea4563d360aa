#
# make bench rows 11-13: how costs grow with the guest's size, 1 to
# 64 GiB, QEMU 10.2.2's conversion path (legacy) beside the manager in the
# same run. Imported by gmem_bench.py, which runs inside the nested rig.
#
#   11. start-up: QEMU's start to the guest's first debugcon line; wall
#       time, QEMU's kernel calls (strace -f -c, a run of its own), RSS
#   12. accept: the guest makes its free RAM private in 2 MiB steps, and
#       in 4 KiB steps over a part; seconds and kernel calls per GiB
#   13. fragmentation: every other 4 KiB page private over 1 GiB, then
#       single conversions, query-guest-memfd, info guest-memfd, a
#       memslot change and a reset, beside the same on an unfragmented
#       guest
#
# Guest RAM is mostly never touched, so a 64 GiB guest fits in L1 (with
# overcommit: a 64 GiB anonymous mapping is more than L1's RAM).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import os
import re
import signal
import subprocess
import sys
import time

from qemu.machine import QEMUMachine
from qemu.qmp import ConnectError
from qemu.qmp.legacy import QEMUMonitorProtocol
from qemu_test.gmem_guest import (GuestLog, guest_args, parse_fields,
                                  sw_protected_vm_args)

LEGACY = 'guest-memfd-conversion=legacy'
MANAGER = 'guest-memfd-conversion=manager,guest-memfd-discard=sync'
PATHS = (('legacy', LEGACY), ('manager', MANAGER))


def env_list(name, default):
    return [int(x) for x in os.environ.get(name, default).split(',') if x]


START_GIB = env_list('BENCH_START_GIB', '1,4,16,64')
ACCEPT_GIB = env_list('BENCH_ACCEPT_GIB', '1,4,16')
FRAG_GIB = env_list('BENCH_FRAG_GIB', '4,16,64')
# The 4 KiB accept covers a part of this many MiB; the fragmented window.
PART_4K_MIB = int(os.environ.get('BENCH_ACCEPT_4K_MIB', '1024'))
FRAG_MIB = int(os.environ.get('BENCH_FRAG_MIB', '1024'))
# QEMU 10.2.2's path pre-faults each accepted range, so it allocates every
# page the guest accepts: it accepts at most this much of a bigger guest.
LEGACY_ACCEPT_MIB = int(os.environ.get('BENCH_LEGACY_ACCEPT_MIB', '2048'))
# The 4 KiB accept's calls are counted over this much of its part.
COUNT_4K_MIB = int(os.environ.get('BENCH_COUNT_4K_MIB', '64'))
REPEAT = int(os.environ.get('BENCH_SCALE_REPEAT', '3'))


def overcommit():
    """A 64 GiB guest's RAM mapping is more than L1 has: overcommit."""
    try:
        with open('/proc/sys/vm/overcommit_memory', 'w') as f:
            f.write('1')
    except OSError as e:
        print('   (cannot set vm.overcommit_memory: %s)' % e)


def status_kib(pid, field):
    with open('/proc/%d/status' % pid) as f:
        m = re.search(r'^%s:\s+(\d+) kB' % field, f.read(), re.M)
    return int(m[1]) if m else 0


def strace_calls(path):
    """{syscall: calls} and the total, from strace -c's summary."""
    calls = {}
    with open(path) as f:
        for line in f:
            w = line.split()
            # Not the summary's own "total" line, which is their sum.
            if len(w) >= 5 and re.match(r'^\d+\.\d+$', w[0]) and \
                    w[3].isdigit() and w[-1] != 'total':
                calls[w[-1]] = int(w[3])
    return calls


def below_4g(gib):
    """q35: RAM below 4 GiB (the rest is above 4 GiB)."""
    size = gib << 30
    return min(size, 0x80000000 if size >= 0xb0000000 else 0xb0000000)


def ram_ranges(gib, floor=16 << 20, top=64 << 20):
    """
    Guest RAM from @floor up, as (gpa, size), q35's layout, but the last
    @top bytes below 4 GiB: SeaBIOS runs there (and puts its tables and
    the PVH start info there) before the guest's first instruction.
    """
    low = below_4g(gib)
    out = [(floor, low - top - floor)]
    if (gib << 30) > low:
        out.append((1 << 32, (gib << 30) - low))
    return out


def wait_line(path, proc, prefix, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, 'rb') as f:
                for line in f:
                    if line.startswith(prefix):
                        return True
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def startup(qemu, kernel, tmp, gib, accel, state, count=False):
    """
    Start QEMU with a @gib GiB guest, no QMP client, and wait for the
    guest's first debugcon line. @state: 'shared' (sw-protected-vm's
    initial state), 'private' (QEMU started with -S; ram_ranges(), all
    RAM but the first 16 MiB and SeaBIOS's last 64 MiB below 4 GiB, made
    private through guest-memfd-convert, then cont: the initial state of
    SEV-SNP and TDX memory, which sw-protected-vm cannot select)
    or 'plain' (no confidential guest, for QEMU's RSS without
    guest_memfd). With @count, under strace -f -c instead, killed at the
    line: {syscall: calls}. Else (seconds, VmRSS KiB, VmHWM KiB).
    """
    stamp = time.monotonic_ns()
    debugcon = os.path.join(tmp, 'start-%d.log' % stamp)
    sock = os.path.join(tmp, 'start-%d.qmp' % stamp)
    trace = os.path.join(tmp, 'start-%d.strace' % stamp)
    args = [qemu, '-machine', 'q35', '-accel', 'kvm,' + accel if accel
            else 'kvm', '-m', '%dG' % gib,
            *(sw_protected_vm_args() if state != 'plain' else ()),
            *guest_args(kernel, debugcon, 'accept_range checkpoints=1')]
    if state == 'private':
        args += ['-S', '-qmp', 'unix:%s,server=on,wait=off' % sock]
    if count:
        args = ['strace', '-f', '-c', '-o', trace] + args
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        if state == 'private':
            while not os.path.exists(sock):
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode())
                time.sleep(0.005)
            qmp = QEMUMonitorProtocol(sock)
            for _ in range(500):    # bound before it listens
                try:
                    qmp.connect()
                    break
                except ConnectError:
                    qmp = QEMUMonitorProtocol(sock)
                    time.sleep(0.01)
            for gpa, size in ram_ranges(gib):
                qmp.cmd('guest-memfd-convert', gpa=gpa, size=size,
                        private=True)
            qmp.cmd('cont')
            qmp.close()
        if not wait_line(debugcon, proc, b'gmem-guest: start', 300):
            raise RuntimeError('%d GiB %s %s: no start line: %s' % (
                gib, accel, state, proc.stderr.read().decode()))
        seconds = time.monotonic() - t0
        pid = proc.pid
        if count:
            with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
                pid = int(f.read().split()[0])
        rss, hwm = status_kib(pid, 'VmRSS'), status_kib(pid, 'VmHWM')
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if count:
        return strace_calls(trace)
    return seconds, rss, hwm


def median_of(runs):
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


def row_startup(qemu, kernel, tmp, results):
    print()
    print('11. start-up: QEMU\'s start to the guest\'s first debugcon line, '
          'sw-protected-vm (median of %d, configs in turn); calls: QEMU\'s '
          'system calls in that time (strace -f -c, a run of its own); RSS: '
          'QEMU\'s VmRSS at the line; bitmap: the RamBlockAttributes bitmap '
          'the manager keeps (1 bit per 4 KiB)' % REPEAT)
    print('%-5s %-8s %9s %9s %9s %9s %8s %8s %8s %9s' % (
        'GiB', 'state', 'legacy s', 'mgr s', 'mgr/leg', 'leg calls',
        'mgr calls', 'RSS MiB', 'plain', 'bitmap'))
    configs = (('plain', None, 'plain'), ('legacy', LEGACY, 'shared'),
               ('manager', MANAGER, 'shared'),
               ('manager-private', MANAGER, 'private'))
    out = results.setdefault('scale-startup', {})
    for gib in START_GIB:
        runs = {c[0]: [] for c in configs}
        for _ in range(REPEAT):
            for name, accel, state in configs:
                runs[name].append(startup(qemu, kernel, tmp, gib, accel,
                                          state))
        med = {name: median_of(r) for name, r in runs.items()}
        calls = {name: sum(startup(qemu, kernel, tmp, gib, accel, state,
                                   count=True).values())
                 for name, accel, state in configs if name != 'plain'}
        for name in med:
            out.setdefault(name, {})[gib] = med[name][0]
            out.setdefault(name + '-calls', {})[gib] = calls.get(name, 0)
            out.setdefault(name + '-rss', {})[gib] = med[name][1]
        bitmap_kib = (gib << 30) // 4096 // 8 // 1024
        print('%-5d %-8s %9.3f %9.3f %9.3f %9d %8d %8.1f %8.1f %6d KiB' % (
            gib, 'shared', med['legacy'][0], med['manager'][0],
            med['manager'][0] / med['legacy'][0], calls['legacy'],
            calls['manager'], med['manager'][1] / 1024,
            med['plain'][1] / 1024, bitmap_kib))
        print('%-5d %-8s %9s %9.3f %9s %9s %8d %8.1f %8s %6d KiB' % (
            gib, 'private', '-', med['manager-private'][0], '-', '-',
            calls['manager-private'], med['manager-private'][1] / 1024,
            '', bitmap_kib))
        sys.stdout.flush()


def guest_vm(qemu, kernel, tmp, accel, gib, command_line, reboot=False,
             wrapper=()):
    debugcon = os.path.join(tmp, 'scale-%d.log' % time.monotonic_ns())
    vm = QEMUMachine(qemu, base_temp_dir=tmp)
    vm.set_machine('q35')
    vm.add_args('-accel', 'kvm,' + accel, '-m', '%dG' % gib,
                *sw_protected_vm_args(),
                *guest_args(kernel, debugcon, command_line, reboot=reboot))
    vm.launch()
    return vm, GuestLog(debugcon)


def kernel_calls(vm):
    """{call: count} of the gmem layer's kernel calls (query-guest-memfd)."""
    return {c['call']: c['calls']
            for c in vm.cmd('query-guest-memfd')['kernel-calls']}


def kernel_ns(vm):
    """Nanoseconds the gmem layer has spent in kernel calls."""
    return vm.cmd('query-guest-memfd')['kernel-ns']


def calls_since(vm, before):
    now = kernel_calls(vm)
    return sum(now[k] - before.get(k, 0) for k in now)


def accept(qemu, kernel, tmp, accel, gib, step, size, count=False):
    """
    The guest's accept_range: (seconds, bytes accepted), or with @count
    QEMU's system calls over the loop ({syscall: calls}, bytes), strace
    attached to all of QEMU's threads between the two checkpoints.
    """
    test = 'gmem-checkpoint: accept_range: '
    vm, log = guest_vm(qemu, kernel, tmp, accel, gib,
                       'accept_range checkpoints=1 step=%d size=%d'
                       % (step, size))
    try:
        log.wait_for(test + 'phase=start', vm, 300)
        if count:
            trace = os.path.join(tmp, 'accept-%d.strace' % time.monotonic_ns())
            st = subprocess.Popen(['strace', '-f', '-c', '-o', trace, '-p',
                                   str(vm.get_pid())],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1)       # attached to every thread
        t0 = time.monotonic()
        vm.cmd('inject-nmi')
        line = log.wait_for(test + 'phase=end', vm, 3600)
        seconds = time.monotonic() - t0
        if count:
            st.send_signal(signal.SIGINT)
            st.wait(timeout=120)
        vm.cmd('inject-nmi')
        vm.wait(timeout=60)
    finally:
        vm.shutdown()
    accepted = int(parse_fields(line.split(': ', 2)[2])['accepted'])
    return (strace_calls(trace) if count else seconds), accepted


def row_accept(qemu, kernel, tmp, results):
    print()
    print('12. accept: the guest makes its free RAM private in 2 MiB steps '
          '(all of it; the legacy path at most %d MiB, as it pre-faults, so '
          'allocates, every page it accepts), and in 4 KiB steps over a %d '
          'MiB part; seconds and QEMU\'s system calls per GiB accepted '
          '(calls: strace -f -c attached over the loop, a run of its own; '
          'for 4 KiB steps over %d MiB of the part)' % (
              LEGACY_ACCEPT_MIB, PART_4K_MIB, COUNT_4K_MIB))
    print('%-5s %-5s %9s %9s %9s %11s %11s %9s' % (
        'GiB', 'step', 'legacy GiB', 'leg s/GiB', 'mgr s/GiB', 'leg calls/G',
        'mgr calls/G', 'leg/mgr s'))
    out = results.setdefault('scale-accept', {})
    for gib in ACCEPT_GIB:
        for step, name in ((2 << 20, '2MiB'), (4096, '4KiB')):
            per = {}
            for path, accel in PATHS:
                if step == 4096:
                    size = PART_4K_MIB << 20
                    count_size = COUNT_4K_MIB << 20
                else:
                    size = LEGACY_ACCEPT_MIB << 20 if path == 'legacy' else 0
                    count_size = size
                seconds, bytes_ = accept(qemu, kernel, tmp, accel, gib, step,
                                         size)
                calls, counted = accept(qemu, kernel, tmp, accel, gib, step,
                                        count_size, count=True)
                if step == 4096 and gib == ACCEPT_GIB[0]:
                    # Which calls a 4 KiB request makes: the top five.
                    top = sorted(calls.items(), key=lambda c: -c[1])[:5]
                    print('      %s, per 4 KiB request: %s' % (path, ', '.join(
                        '%s %.2f' % (k, v / (counted / 4096))
                        for k, v in top)))
                per[path] = (seconds / (bytes_ / (1 << 30)),
                             sum(calls.values()) / (counted / (1 << 30)),
                             bytes_ / (1 << 30))
                out.setdefault('%s-%s' % (path, name), {})[gib] = \
                    per[path][0]
                out.setdefault('%s-%s-calls' % (path, name), {})[gib] = \
                    per[path][1]
            print('%-5d %-5s %9.2f %9.3f %9.3f %11.0f %11.0f %8.1fx' % (
                gib, name, per['legacy'][2], per['legacy'][0],
                per['manager'][0], per['legacy'][1], per['manager'][1],
                per['legacy'][0] / per['manager'][0]))
            sys.stdout.flush()


def timed_cmd(vm, repeat, *args, **kwargs):
    """Median seconds of @repeat QMP commands, and the last reply."""
    times = []
    for _ in range(repeat):
        t0 = time.monotonic()
        reply = vm.cmd(*args, **kwargs)
        times.append(time.monotonic() - t0)
    return sorted(times)[len(times) // 2], reply


def fragment(qemu, kernel, tmp, accel, gib, frag):
    """One boot of the guest's fragment test; a dict of what was measured."""
    test = 'gmem-checkpoint: fragment: '
    r = {}
    vm, log = guest_vm(qemu, kernel, tmp, accel, gib,
                       'fragment checkpoints=1 size=%d frag=%d'
                       % (FRAG_MIB << 20, frag), reboot=True)
    try:
        log.wait_for(test + 'phase=start', vm, 300)
        t0 = time.monotonic()
        vm.cmd('inject-nmi')
        f = parse_fields(log.wait_for(test + 'phase=fragmented', vm, 3600))
        r['frag_s'], r['frag_tsc'] = time.monotonic() - t0, int(f['tsc'])
        before, ns = kernel_calls(vm), kernel_ns(vm)
        vm.cmd('inject-nmi')
        f = parse_fields(log.wait_for(test + 'phase=converted', vm, 600))
        r['conv_calls'] = calls_since(vm, before)
        r['conv_kernel_us'] = (kernel_ns(vm) - ns) / 1e3
        for k in ('tsc4k', 'tsc2m_over', 'tsc2m_beside', 'n4k', 'n2m'):
            r[k] = int(f[k])
        pid = vm.get_pid()
        r['floor_s'], _ = timed_cmd(vm, 5, 'query-status')
        r['query_s'], reply = timed_cmd(vm, 5, 'query-guest-memfd')
        r['query_bytes'] = len(json.dumps(reply))
        rss0 = status_kib(pid, 'VmRSS')
        r['ranges_s'], reply = timed_cmd(vm, 5, 'query-guest-memfd',
                                         ranges=True)
        r['ranges_bytes'] = len(json.dumps(reply))
        ram = [b for b in reply['blocks'] if b['id'] == 'pc.ram']
        r['ranges_listed'] = len(ram[0].get('ranges', [])) if ram else 0
        r['truncated'] = bool(ram and ram[0].get('ranges-truncated'))
        for _ in range(15):
            vm.cmd('query-guest-memfd', ranges=True)
        r['ranges_rss_kib'] = status_kib(pid, 'VmRSS') - rss0
        r['info_s'], reply = timed_cmd(vm, 5, 'human-monitor-command',
                                       command_line='info guest-memfd')
        r['info_bytes'] = len(reply)
        before = kernel_calls(vm)
        vm.cmd('inject-nmi')
        f = parse_fields(log.wait_for(test + 'phase=slot', vm, 600))
        r['slot_calls'] = calls_since(vm, before)
        r['slot_tsc'] = sum(int(x) for x in f['tsc_slot'].split(','))
        before = kernel_calls(vm)
        rss0 = status_kib(pid, 'VmRSS')
        t0 = time.monotonic()
        vm.cmd('system_reset')
        vm.event_wait('RESET', timeout=600)
        r['reset_s'] = time.monotonic() - t0
        r['reset_calls'] = calls_since(vm, before)
        r['reset_rss_kib'] = status_kib(pid, 'VmRSS') - rss0
        # The guest boots again and waits at its first checkpoint.
        log.wait_for(test + 'phase=start', vm, 300)
    finally:
        vm.shutdown()
    return r


def row_fragment(qemu, kernel, tmp, results):
    print()
    print('13. fragmentation: every other 4 KiB page of a %d MiB window '
          'private (%d runs), beside the same guest unfragmented; one '
          'conversion to private (4 KiB: a shared page between two private '
          'ones; 2 MiB over: the window\'s last 2 MiB pages, 256 runs each; '
          '2 MiB beside: just past the window), us each (guest TSC); the '
          'monitor, ms (QMP round trip from the bench; query-status is its '
          'floor) and reply bytes; a memslot change (q35 PAM0 flipped and '
          'back: the low RAM memslot, which holds the window, deleted and '
          'added twice) and a QMP system_reset, ms; calls: the gmem layer\'s '
          'kernel calls (query-guest-memfd kernel-calls)' % (
              FRAG_MIB, FRAG_MIB << 8))
    out = results.setdefault('scale-frag', {})
    hz = None
    rows = []
    for gib in FRAG_GIB:
        for path, accel in PATHS:
            frag = fragment(qemu, kernel, tmp, accel, gib, 1)
            flat = fragment(qemu, kernel, tmp, accel, gib, 0)
            # The guest's TSC, timed by the host over the fragmenting loop.
            hz = hz or frag['frag_tsc'] / frag['frag_s']
            rows.append((gib, path, frag, flat))
    print('   guest TSC: %.0f MHz (host clock over the first fragmenting '
          'loop)' % (hz / 1e6))
    print('%-4s %-8s %-6s %8s %8s %8s %8s %7s %7s %7s %8s %8s %8s %8s %8s '
          '%8s %7s %7s' % (
              'GiB', 'path', 'guest', 'frag s', '4K us', '2M over',
              '2M bes.', 'conv c', 'stat ms', 'floor', 'rng ms', 'rng B',
              'info ms', 'slot ms', 'slot c', 'reset ms', 'reset c',
              'rng RSS'))
    for gib, path, frag, flat in rows:
        for name, r in (('frag', frag), ('flat', flat)):
            us = {k: r[k] / r['n4k' if k == 'tsc4k' else 'n2m'] / hz * 1e6
                  for k in ('tsc4k', 'tsc2m_over', 'tsc2m_beside')}
            r['us'] = us
            r['slot_ms'] = r['slot_tsc'] / hz * 1e3
            print('%-4d %-8s %-6s %8.1f %8.1f %8.1f %8.1f %7s %7.2f %7.2f '
                  '%7.2f %8d %8.2f %8.1f %8d %8.1f %7d %5dKiB' % (
                      gib, path, name, r['frag_s'] if name == 'frag' else 0,
                      us['tsc4k'], us['tsc2m_over'], us['tsc2m_beside'],
                      r['conv_calls'] if path == 'manager' else '-',
                      r['query_s'] * 1e3, r['floor_s'] * 1e3,
                      r['ranges_s'] * 1e3, r['ranges_bytes'],
                      r['info_s'] * 1e3, r['slot_ms'], r['slot_calls'],
                      r['reset_s'] * 1e3, r['reset_calls'],
                      r['ranges_rss_kib']))
            for key, value in (('4k-us', us['tsc4k']),
                               ('2m-over-us', us['tsc2m_over']),
                               ('2m-beside-us', us['tsc2m_beside']),
                               ('query-ms', r['query_s'] * 1e3),
                               ('ranges-ms', r['ranges_s'] * 1e3),
                               ('slot-ms', r['slot_ms']),
                               ('reset-ms', r['reset_s'] * 1e3)):
                out.setdefault('%s-%s-%s' % (path, name, key), {})[gib] = \
                    value
        print('%-4d %-8s %-6s %8s %8.2f %8.2f %8.2f   fragmented/flat; '
              'ranges: %d listed, truncated: %s' % (
                  gib, path, 'ratio', '', frag['us']['tsc4k'] /
                  flat['us']['tsc4k'], frag['us']['tsc2m_over'] /
                  flat['us']['tsc2m_over'], frag['us']['tsc2m_beside'] /
                  flat['us']['tsc2m_beside'], frag['ranges_listed'],
                  frag['truncated']))
        if path == 'manager':
            # Which part of the fragmented guest's extra time is KVM's.
            print('%-4d %-8s %-6s    in kernel calls, over the %d 4 KiB '
                  'and 2x%d 2 MiB conversions: fragmented %.0f us, flat '
                  '%.0f us' % (gib, path, 'kernel', frag['n4k'], frag['n2m'],
                               frag['conv_kernel_us'],
                               flat['conv_kernel_us']))
        sys.stdout.flush()


def scale_rows(want, qemu, kernel, tmp, results):
    if not any(want(r) for r in (11, 12, 13)):
        return
    overcommit()
    if want(11):
        row_startup(qemu, kernel, tmp, results)
    if want(12):
        row_accept(qemu, kernel, tmp, results)
    if want(13):
        row_fragment(qemu, kernel, tmp, results)
