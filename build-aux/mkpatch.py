#!/usr/bin/python3
"""Write one patch of the series from edits to upstream files.

    build-aux/mkpatch.py NAME.patch "Subject" "Why, in a few lines" EDITS...

Each EDIT is PATH:SCRIPT, where SCRIPT is a Python file that gets the
upstream text (from the staging tree: pristine source plus the patches
before this one) as `s` and leaves the new text in `s`. The patch is
written to patches/NAME.patch; add it to patches/series yourself.
"""
import difflib
import os
import sys

cache = os.environ.get('QEMU_GMEM_CACHE') or os.path.join(
    os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
    'qemu-gmem')
staging = os.path.join(cache, 'staging')


def main(name, subject, body, *edits):
    out = ['From: qemu-gmem <qemu-gmem@invalid>\n',
           'Subject: %s\n' % subject, '\n', body.rstrip() + '\n', '---\n']
    for edit in edits:
        path, script = edit.split(':', 1)
        with open(os.path.join(staging, path)) as f:
            old = f.read()
        env = {'s': old}
        with open(script) as f:
            exec(f.read(), env)
        if env['s'] == old:
            sys.exit('%s: the edit changed nothing' % path)
        out += difflib.unified_diff(old.splitlines(True),
                                    env['s'].splitlines(True),
                                    'a/' + path, 'b/' + path)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, 'patches', name), 'w') as f:
        f.writelines(out)


if __name__ == '__main__':
    main(*sys.argv[1:])
