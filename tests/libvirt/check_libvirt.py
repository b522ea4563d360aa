#!/usr/bin/python3
#
# make check-libvirt: a real libvirtd (Debian's 11.3) starts our QEMU,
# installed with make install into a temporary prefix, for each example
# domain of docs/system/libvirt/; the test guest runs, QMP through virsh
# answers, the RAM is what the domain asked for, and nothing is left
# behind. The sw-protected-vm domain needs KVM_X86_SW_PROTECTED_VM and the
# in-place one guest_memfd, which the host's KVM may lack: both run under a
# libvirtd of its own inside the nested rig's L1 (this script again, with
# --in-rig), and the in-place one on the host too where its KVM has it. TAP on stdout. Run as root; apt installs libvirt if
# missing.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CACHE = os.environ.get('QEMU_GMEM_CACHE') or os.path.join(
    os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
    'qemu-gmem')
GUEST = os.path.join(CACHE, 'guest', 'gmem-guest.elf')
# In the rig, a copy in the scratch dir (L1 may not see the clone: its
# /tmp is L1's own).
DOMAINS = os.environ.get('QEMU_GMEM_LIBVIRT_DOMAINS') or os.path.join(
    REPO, 'docs', 'system', 'libvirt')
RAM = 128 << 20


def load_kvm_caps():
    """tests/functional/qemu_test/kvm_caps.py, loaded by path."""
    path = os.path.join(REPO, 'tests', 'functional', 'qemu_test',
                        'kvm_caps.py')
    if not os.path.exists(path):    # the copy of this script in the rig
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'kvm_caps.py')
    spec = importlib.util.spec_from_file_location('kvm_caps', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# In L1 both run; on the host the in-place one where its KVM allows.
RIG_DOMAINS = (('gmem-in-place.xml', lambda: verify_ram(True)),
               ('gmem-sw-protected.xml', lambda: verify_sw_protected))

results = []


def tap(ok, name, why=''):
    results.append(ok)
    print('%s %d %s' % ('ok' if ok else 'not ok', len(results), name))
    for line in why.splitlines() if not ok else []:
        print('# ' + line)
    sys.stdout.flush()


def run(*cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode:
        raise RuntimeError('%s: exit %d: %s' % (' '.join(cmd), p.returncode,
                                                (p.stderr or p.stdout).strip()))
    return p.stdout


def virsh(*args, check=True):
    return run('virsh', '-c', 'qemu:///system', *args, check=check)


def ensure_libvirt():
    if shutil.which('libvirtd') and shutil.which('virsh'):
        return
    print('# installing Debian libvirt (bookworm-backports)', flush=True)
    run(os.path.join(REPO, 'build-aux', 'apt-setup.sh'))
    run('apt-get', 'install', '-y', '-qq', '--no-install-recommends',
        '-t', 'bookworm-backports', 'libvirt-daemon-system',
        'libvirt-clients', 'libvirt-daemon-driver-qemu',
        env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def pid_of(path):
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
        return pid if pid and alive(pid) else 0
    except (OSError, ValueError):
        return 0


class Daemons:
    """virtlogd and libvirtd, started here (no systemd) unless running."""

    def __init__(self):
        self.started = []

    def start(self):
        for name, pidfile in (('virtlogd', '/run/virtlogd.pid'),
                              ('libvirtd', '/run/libvirtd.pid')):
            if pid_of(pidfile):
                print('# %s already runs; using it' % name, flush=True)
                continue
            run(name, '-d')
            for _ in range(100):
                pid = pid_of(pidfile)
                if pid:
                    self.started.append((name, pid))
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError('%s did not start' % name)
        for _ in range(100):
            if not subprocess.run(['virsh', '-c', 'qemu:///system', 'version'],
                                  capture_output=True).returncode:
                return
            time.sleep(0.1)
        raise RuntimeError('libvirtd does not answer')

    def stop(self):
        for name, pid in reversed(self.started):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.started = []


def wait_for(path, text, pid_path, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(path, errors='replace') as f:
                data = f.read()
            if text in data:
                return data
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError('no "%s" in the guest output in %d s:\n%s' % (
        text, seconds, open(path).read() if os.path.exists(path) else ''))


def guest_memfd_mappings(pid):
    """Sizes of the process's mappings of a guest_memfd."""
    sizes = []
    with open('/proc/%d/maps' % pid) as f:
        for line in f:
            # "anon_inode:[kvm-gmem]" on 6.18; 7.2 names it from guest_memfd's
            # own pseudo filesystem, still with "kvm-gmem" in it.
            if 'kvm-gmem' in line:
                lo, hi = line.split()[0].split('-')
                sizes.append(int(hi, 16) - int(lo, 16))
    return sizes


def qmp(name, command, **arguments):
    cmd = {'execute': command}
    if arguments:
        cmd['arguments'] = arguments
    reply = json.loads(virsh('qemu-monitor-command', name, json.dumps(cmd)))
    if 'return' not in reply:
        raise RuntimeError('%s: %s' % (command, reply))
    return reply['return']


def guest_results(out):
    return dict(re.findall(r'^gmem-test: (\w+): (\w+)', out, re.M))


def verify_ram(in_place):
    """At the guest's ram_pattern checkpoint: the RAM is what was asked."""
    def verify(name, pid, log):
        qmp(name, 'query-guest-memfd')
        maps = guest_memfd_mappings(pid)
        want = [RAM] if in_place else []
        if maps != want:
            raise RuntimeError('guest_memfd mappings %s, expected %s'
                               % (maps, want))
        virsh('inject-nmi', name)
        out = wait_for(log, 'gmem-checkpoint: hold:', None)
        if guest_results(out) != {'ram_pattern': 'PASS'}:
            raise RuntimeError('the guest RAM test did not pass:\n' + out)
        return 'guest_memfd mappings %s' % maps
    return verify


def verify_sw_protected(name, pid, log):
    """
    pc.ram has a private side the guest converts by hypercall (the round
    trips) and QMP converts too, KVM's attributes underneath: the guest's
    round-trip test checks zeros after each change, i.e. KVM really
    switched the page between its two sides.
    """
    virsh('inject-nmi', name)
    out = wait_for(log, 'gmem-checkpoint: hold:', None)
    if guest_results(out) != {'ram_pattern': 'PASS',
                              'convert_roundtrip_4k': 'PASS'}:
        raise RuntimeError('the guest tests did not pass:\n' + out)
    info = qmp(name, 'query-guest-memfd')
    ram = [b for b in info['blocks'] if b['id'] == 'pc.ram']
    if not ram or ram[0]['size'] != RAM or \
       ram[0]['conversions-to-private'] < 16 or ram[0]['private']:
        raise RuntimeError('query-guest-memfd after the round trips: %s'
                           % info)
    qmp(name, 'guest-memfd-convert', gpa=64 << 20, size=2 << 20,
        private=True)
    after = [b for b in qmp(name, 'query-guest-memfd')['blocks']
             if b['id'] == 'pc.ram'][0]
    qmp(name, 'guest-memfd-convert', gpa=64 << 20, size=2 << 20,
        private=False)
    if after['private'] != 2 << 20:
        raise RuntimeError('2 MiB converted over QMP, private %d'
                           % after['private'])
    return ('guest round trips passed, %d conversions to private, QMP made '
            '2 MiB private and shared again' %
            (after['conversions-to-private']))


def check_domain(xml_name, work, prefix, verify):
    name = xml_name[:-4]
    log = os.path.join(work, name + '.debugcon')
    with open(os.path.join(DOMAINS, xml_name)) as f:
        xml = (f.read().replace('@PREFIX@', prefix)
               .replace('@GUEST@', os.path.join(work, 'gmem-guest.elf'))
               .replace('@LOG@', log))
    path = os.path.join(work, xml_name)
    with open(path, 'w') as f:
        f.write(xml)
    virsh('define', path)
    try:
        virsh('start', name)
        pid = pid_of('/run/libvirt/qemu/%s.pid' % name)
        if not pid:
            raise RuntimeError('no QEMU pid for %s' % name)
        user = run('ps', '-o', 'user=', '-p', str(pid)).strip()
        if user != 'libvirt-qemu':
            raise RuntimeError('QEMU runs as %s, not libvirt-qemu' % user)
        # The guest writes and checks a pattern over its RAM, then waits.
        wait_for(log, 'gmem-checkpoint: ram_pattern:', None)
        what = verify(name, pid, log)
        virsh('destroy', name)
        for _ in range(50):
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError('QEMU pid %d outlived destroy' % pid)
    finally:
        virsh('destroy', name, check=False)
        virsh('undefine', name, check=False)
    left = [f for f in os.listdir('/run/libvirt/qemu') if f.startswith(name)]
    if left:
        raise RuntimeError('left in /run/libvirt/qemu: %s' % left)
    return 'QEMU as %s, %s' % (user, what)


# libvirt's state, writable in L1 (the host's root is read-only there):
# a copy of each directory on L1's tmpfs, bound over it.
LIBVIRT_STATE = ('/etc/libvirt', '/var/lib/libvirt', '/var/cache/libvirt',
                 '/var/log/libvirt')


def in_rig(work):
    """Inside L1: a libvirtd of its own runs the sw-protected-vm domain."""
    for d in LIBVIRT_STATE:
        copy = '/tmp/libvirt-state' + d
        shutil.copytree(d, copy, symlinks=True)
        run('mount', '--bind', copy, d)
    # L1 runs this chrooted into the host's root; QEMU in the private /dev
    # that libvirt builds by default found no /dev/kvm there.
    with open('/etc/libvirt/qemu.conf', 'a') as f:
        f.write('\nnamespaces = []\n')
    # What Debian's udev rule would do; L1 has no udev.
    shutil.chown('/dev/kvm', group='kvm')
    os.chmod('/dev/kvm', 0o660)
    daemons = Daemons()
    try:
        daemons.start()
    except Exception as e:
        print('rig-result: ' + json.dumps({'domain': 'libvirtd', 'ok': False,
                                           'why': str(e)}), flush=True)
        return 0
    try:
        for xml_name, verify in RIG_DOMAINS:
            result = {'domain': xml_name, 'ok': False, 'why': ''}
            try:
                result['what'] = check_domain(xml_name, work,
                                              os.path.join(work, 'prefix'),
                                              verify())
                result['ok'] = True
            except Exception as e:
                result['why'] = str(e)
            print('rig-result: ' + json.dumps(result), flush=True)
    finally:
        daemons.stop()
    return 0


def rig_unavailable():
    if os.environ.get('QEMU_GMEM_RIG_UNAVAILABLE'):
        return os.environ['QEMU_GMEM_RIG_UNAVAILABLE']
    if (CACHE + '/').startswith('/tmp/'):
        return 'the cache %s is under /tmp, which L1 replaces' % CACHE
    if subprocess.run([os.path.join(REPO, 'tests', 'rig', 'setup.sh'), '-q'],
                      capture_output=True).returncode:
        return 'tests/rig/setup.sh failed'
    return None


def check_in_rig(work):
    """
    The in-place and sw-protected-vm domains, under a libvirtd inside the
    rig's L1. A rig that cannot run fails: the tier must run everywhere.
    """
    why = rig_unavailable()
    if why:
        tap(False, 'the libvirt tier in the rig', 'cannot run: ' + why)
        return
    # This script, what it loads and the domains, where L1 can see them
    # whatever the clone's path.
    copy = os.path.join(work, 'rig')
    shutil.copytree(DOMAINS, os.path.join(copy, 'domains'))
    shutil.copy(os.path.abspath(__file__), copy)
    shutil.copy(os.path.join(REPO, 'tests', 'functional', 'qemu_test',
                             'kvm_caps.py'), copy)
    env = dict(os.environ, RIG_SCRATCH=work, RIG_TIMEOUT='900',
               QEMU_GMEM_LIBVIRT_DOMAINS=os.path.join(copy, 'domains'))
    p = subprocess.run([os.path.join(REPO, 'tests', 'rig', 'run.sh'),
                        '/usr/bin/python3',
                        os.path.join(copy, os.path.basename(__file__)),
                        '--in-rig', work], capture_output=True, text=True,
                       env=env)
    found = {r['domain']: r for r in
             (json.loads(line.split(' ', 1)[1])
              for line in p.stdout.splitlines()
              if line.startswith('rig-result: '))}
    for xml_name, _ in RIG_DOMAINS:
        name = 'domain %s, in the rig' % xml_name
        r = found.get(xml_name) or found.get('libvirtd')
        if not r:
            tap(False, name, 'no result; run.sh exit %d:\n%s%s' % (
                p.returncode, p.stdout, p.stderr))
        elif r['ok']:
            tap(True, '%s: %s' % (name, r['what']))
        else:
            tap(False, name, r['why'])


def main():
    if os.geteuid():
        print('1..0 # SKIP make check-libvirt runs as root')
        return 0
    if sys.argv[1:2] == ['--in-rig']:
        return in_rig(sys.argv[2])
    ensure_libvirt()
    # Under /var/tmp, not root's home or a private /tmp: libvirt-qemu must
    # reach the prefix, the guest kernel and the log directory.
    work = tempfile.mkdtemp(prefix='qemu-gmem-libvirt.', dir='/var/tmp')
    os.chmod(work, 0o755)
    prefix = os.path.join(work, 'prefix')
    daemons = Daemons()
    try:
        env = dict(os.environ, PREFIX=prefix)
        env.pop('DESTDIR', None)
        run(os.path.join(REPO, 'build-aux', 'install.sh'), 'install', env=env)
        tap(os.access(os.path.join(prefix, 'bin', 'qemu-system-x86_64'),
                      os.X_OK), 'make install into %s' % prefix)
        shutil.copy(GUEST, os.path.join(work, 'gmem-guest.elf'))
        os.chmod(os.path.join(work, 'gmem-guest.elf'), 0o644)
        # QEMU, as libvirt-qemu, writes the guest's output here.
        shutil.chown(work, 'libvirt-qemu')
        daemons.start()
        version = [line.split(':', 1)[1].strip()
                   for line in virsh('version', '--daemon').splitlines()
                   if 'daemon' in line.lower()]
        tap(bool(version), 'libvirtd answers (%s)' % ', '.join(version))
        in_place_here = load_kvm_caps().kvm_in_place_guest_memfd()
        for xml_name, in_place in (('gmem-plain.xml', False),
                                   ('gmem-in-place.xml', True)):
            if in_place and not in_place_here:
                # tests/allowed-skips: it runs in the rig instead.
                print('ok %d domain %s # SKIP host KVM has no in-place '
                      'guest_memfd' % (len(results) + 1, xml_name))
                results.append(True)
                continue
            try:
                tap(True, 'domain %s: %s' % (xml_name, check_domain(
                    xml_name, work, prefix, verify_ram(in_place))))
            except Exception as e:
                tap(False, 'domain %s' % xml_name, str(e))
        daemons.stop()
        check_in_rig(work)
        run(os.path.join(REPO, 'build-aux', 'install.sh'), 'uninstall',
            env=env)
        left = [os.path.join(d, f) for d, _, fs in os.walk(prefix)
                for f in fs]
        tap(not left, 'make uninstall leaves no file', ' '.join(left[:5]))
    except Exception as e:
        tap(False, 'libvirt tier set-up', str(e))
    finally:
        daemons.stop()
        shutil.rmtree(work, ignore_errors=True)
    print('1..%d' % len(results))
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
