#!/usr/bin/python3
"""
house.py [--tap]: the size limits that keep the fork readable (issue 28),
measured on the source tree; make check runs it as its "house" tier. It
needs nothing built and takes a few milliseconds.

It prints each measure beside its limit and exits 1 if any is exceeded:

  - the largest file of accel/kvm/gmem/ (every file there): 600 lines;
  - the longest function of accel/kvm/gmem/ (its .c and .h files): 80
    lines. QEMU style puts the "{" of a function body alone on a line at
    column 0; a function is counted from that line to the next line that
    starts with "}" at column 0, both included. Its name is the first
    "identifier(" of the lines before the "{" (back to a blank line, a
    comment, a "#" line or a line ending in ";" or "}"), attributes
    "__attribute__((...))" left out. Braces of structs, enums and initializers
    share their line with other text, so they are not counted;
  - the lines the patch series adds to upstream files: 200. Every "+" line
    inside a hunk of patches/*.patch (blank "+" lines too), read hunk by
    hunk from the "@@" line counts, so the "+++ b/path" headers are not
    counted and a "++" line of content would be;
  - the largest test source of ours: 600 lines. The set is every .py, .c,
    .h, .sh and .S file under tests/ (the repository holds only our files,
    so all of tests/ is ours: the functional tests, their qemu_test base
    files, the unit tests, the test guest, the fuzz and TSan harnesses,
    the rig, the benchmarks, the libvirt tier), except the files in
    TEST_EXCEPTIONS below. Those were over the limit before issue 28,
    which split the functional tests only; they are printed on every run
    with their sizes, and a new file or any other file over 600 fails.

With --tap it also prints one TAP result per limit, for
build-aux/test-summary.py.
"""
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GMEM_DIR = 'accel/kvm/gmem'
MAX_GMEM_FILE = 600
MAX_FUNCTION = 80
MAX_UPSTREAM_ADDED = 200
MAX_TEST_FILE = 600
TEST_EXTENSIONS = ('.py', '.c', '.h', '.sh', '.S')
# Test sources not held to MAX_TEST_FILE, and why.
TEST_EXCEPTIONS = {
    'tests/tsan/tsan-gmem-manager.c':
        'one harness: the stand-in of KVM\'s VM fd and its threads',
    'tests/fuzz/fuzz-gmem-manager.c':
        'one harness: the stand-in of KVM and the decoder of fuzz input',
    'tests/guest/tests_convert.c':
        'the test guest\'s conversion tests, outside issue 28\'s split',
}

HUNK = re.compile(r'^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@')
CALL = re.compile(r'([A-Za-z_]\w*)\s*\(')
ATTRIBUTE = re.compile(r'__attribute__\s*\(\(.*?\)\)')


def lines_of(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.read().splitlines()


def functions(path):
    """[(name, lines)] of the top-level functions of C file @path."""
    text = lines_of(path)
    found = []
    i = 0
    while i < len(text):
        if text[i].rstrip() != '{':
            i += 1
            continue
        start = i
        j = start - 1
        decl = []
        while j >= 0:
            line = text[j].strip()
            if not line or line.startswith(('#', '*', '/*', '//')) or \
                    line.endswith((';', '}', '*/')):
                break
            decl.insert(0, line)
            j -= 1
        m = CALL.search(ATTRIBUTE.sub('', ' '.join(decl)))
        name = m.group(1) if m else '(unnamed, line %d)' % (start + 1)
        i += 1
        while i < len(text) and not text[i].startswith('}'):
            i += 1
        found.append((name, i - start + 1))
        i += 1
    return found


def added_upstream_lines(path):
    """The "+" lines of the hunks of patch @path."""
    added = 0
    old = new = 0
    for line in lines_of(path):
        if old > 0 or new > 0:
            if line.startswith('+'):
                added += 1
                new -= 1
            elif line.startswith('-'):
                old -= 1
            elif line.startswith('\\'):
                pass                    # "\ No newline at end of file"
            else:
                old -= 1
                new -= 1
            continue
        m = HUNK.match(line)
        if m:
            old = int(m.group(1) or 1)
            new = int(m.group(2) or 1)
    return added


def test_sources():
    for top, dirs, files in os.walk(os.path.join(REPO, 'tests')):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__')))
        for f in sorted(files):
            if f.endswith(TEST_EXTENSIONS):
                yield os.path.relpath(os.path.join(top, f), REPO)


def largest(paths):
    """(lines, path) of the longest file of @paths, or (0, '(none)')."""
    return max(((len(lines_of(os.path.join(REPO, p))), p) for p in paths),
               default=(0, '(none)'))


def measures():
    """[(what, value, limit)], with a note per exception first."""
    gmem = sorted(os.path.relpath(p, REPO) for p in
                  glob.glob(os.path.join(REPO, GMEM_DIR, '*'))
                  if os.path.isfile(p))
    n, path = largest(gmem)
    out = [('largest %s file: %s %d lines' % (
        GMEM_DIR, os.path.basename(path), n), n, MAX_GMEM_FILE)]

    longest = (0, '(none)', '')
    for p in gmem:
        if p.endswith(('.c', '.h')):
            for name, count in functions(os.path.join(REPO, p)):
                longest = max(longest, (count, name, os.path.basename(p)))
    n, name, path = longest
    out.append(('longest %s function: %s() in %s %d lines' % (
        GMEM_DIR, name, path, n), n, MAX_FUNCTION))

    patches = sorted(glob.glob(os.path.join(REPO, 'patches', '*.patch')))
    n = sum(added_upstream_lines(p) for p in patches)
    out.append(('lines added to upstream files by the %d patches of '
                'patches/: %d' % (len(patches), n), n, MAX_UPSTREAM_ADDED))

    tests = list(test_sources())
    for p in sorted(TEST_EXCEPTIONS):
        if p in tests:
            n = len(lines_of(os.path.join(REPO, p)))
            print('house: not held to the test file limit: %s %d lines (%s)%s'
                  % (p, n, TEST_EXCEPTIONS[p],
                     '; now within it: drop the exception'
                     if n <= MAX_TEST_FILE else ''))
    n, path = largest(p for p in tests if p not in TEST_EXCEPTIONS)
    out.append(('largest test file (%d under tests/, %d excepted): %s '
                '%d lines' % (len(tests), len(TEST_EXCEPTIONS), path, n),
                n, MAX_TEST_FILE))
    return out


def main(args):
    tap = args == ['--tap']
    if args and not tap:
        sys.exit('usage: build-aux/house.py [--tap]')
    results = measures()
    over = 0
    if tap:
        print('1..%d' % len(results))
    for i, (what, value, limit) in enumerate(results, 1):
        bad = value > limit
        over += bad
        line = '%s (limit %d)%s' % (what, limit, ': OVER' if bad else '')
        print('house: ' + line)
        if tap:
            print('%s %d %s' % ('not ok' if bad else 'ok', i, line))
    print('house: %s' % ('%d over the limit' % over if over else
                         'every measure within its limit'))
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
