#!/usr/bin/env python3
#
# make bench, host part: wall time of the launch measurement dry run
# (measure-only=on) with Debian's 4 MiB OVMF images, beside the same QEMU
# building the same machine without a confidential guest and quitting.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import statistics
import subprocess
import sys
import time

RUNS = 5


def wall(cmd, stdin=None):
    t0 = time.monotonic()
    subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, text=True)
    return time.monotonic() - t0


def median(cmd, stdin=None):
    return statistics.median(wall(cmd, stdin) for _ in range(RUNS))


def main(qemu, fw_dir):
    snp_fw = os.path.join(fw_dir, 'OVMF.amdsev.fd')
    tdx_fw = os.path.join(fw_dir, 'OVMF.inteltdx.ms.fd')
    common = ['-display', 'none', '-nic', 'none']
    rows = [
        ('baseline: q35 + OVMF.amdsev.fd, built, then quit',
         [qemu, '-machine', 'q35', '-bios', snp_fw, '-S', '-cpu', 'EPYC-v4',
          '-monitor', 'stdio', *common], 'quit\n'),
        ('SEV-SNP dry run, EPYC-v4, 1 vCPU',
         [qemu, '-machine', 'q35,confidential-guest-support=sev0',
          '-bios', snp_fw, '-cpu', 'EPYC-v4', '-smp', '1', '-object',
          'sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,'
          'measure-only=on', *common], None),
        ('SEV-SNP dry run, EPYC-Milan, 4 vCPUs',
         [qemu, '-machine', 'q35,confidential-guest-support=sev0',
          '-bios', snp_fw, '-cpu', 'EPYC-Milan', '-smp', '4', '-object',
          'sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,'
          'measure-only=on', *common], None),
        ('TDX dry run, 1 vCPU',
         [qemu, '-machine', 'q35,confidential-guest-support=tdx0',
          '-bios', tdx_fw, '-smp', '1', '-object',
          'tdx-guest,id=tdx0,measure-only=on', *common], None),
    ]
    print('10. launch measurement dry run (host, TCG, no KVM), median of %d'
          % RUNS)
    print('%-48s %9s %11s' % ('run', 'seconds', 'vs baseline'))
    base = None
    for name, cmd, stdin in rows:
        s = median(cmd, stdin)
        base = base or s
        print('%-48s %9.3f %10.2fx' % (name, s, s / base))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
