#!/usr/bin/python3
"""
compile-flags.py COMPILE_COMMANDS FILE: the include paths and defines
QEMU's build compiles FILE (a path suffix, e.g. accel/kvm/gmem/kvm-gmem.c)
with, read from meson's compile_commands.json, shell-quoted on one line.
The fuzz and TSan harnesses compile our files as QEMU does with these.
"""
import json
import shlex
import sys


def flags(commands, path):
    for c in json.load(open(commands)):
        if not c['file'].endswith(path):
            continue
        keep, take_next = [], False
        for a in shlex.split(c['command']):
            if take_next:
                keep.append(a)
                take_next = False
            elif a in ('-isystem', '-iquote'):
                keep.append(a)
                take_next = True
            elif a.startswith(('-I', '-D', '-isystem')):
                keep.append(a)
        return ' '.join(shlex.quote(a) for a in keep)
    sys.exit('%s: not in %s' % (path, commands))


if __name__ == '__main__':
    print(flags(*sys.argv[1:]))
