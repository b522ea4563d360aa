#!/usr/bin/env python3
#
# The sw-protected-vm tests of the nested rig, split by subject into
# test_gmem_sw_*.py (issue 28), as one unittest run: one TAP stream with
# one plan, printed the way each of QEMU's functional test files prints
# its own (QemuSystemTest.main()), so that the rig tier (test_gmem_rig.py)
# runs them all in one L1 boot. Arguments are unittest's, as for a test
# file: -k test_random_requests_storm, or a test's name.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import sys
import unittest

from qemu_test import QemuSystemTest

# In this order; each also runs alone (python3 test_gmem_sw_storms.py).
MODULES = (
    'test_gmem_sw_conversions',     # conversions, the record, the rules
    'test_gmem_sw_answers',         # bad requests, failing kernel calls
    'test_gmem_sw_host_io',         # host I/O, DMA and its leases
    'test_gmem_sw_lifetimes',       # reset, memslots, launch, memslot-zap
    'test_gmem_sw_hugetlb',         # a shared side of huge pages
    'test_gmem_sw_vfio',            # device assignment
    'test_gmem_sw_storms',          # storms and concurrency
)


def load_tests(loader, standard_tests, pattern):
    """
    unittest's hook: this module's tests are those of MODULES. A module
    that fails to import is a failed test of its own; the others run.
    QEMU_GMEM_RIG_AFTER=ID leaves out the tests up to and including ID:
    the rig tier resumes there in a new boot when one stops answering.
    """
    suite = loader.loadTestsFromNames(MODULES)
    after = os.environ.get('QEMU_GMEM_RIG_AFTER')
    if not after:
        return suite
    tests = list(iter_tests(suite))
    ids = [t.id() for t in tests]
    return unittest.TestSuite(tests[ids.index(after) + 1:]
                              if after in ids else tests)


def iter_tests(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iter_tests(test)
        else:
            yield test


if __name__ == '__main__':
    if '--list' in sys.argv:
        # The ids of the tests it would run (with -k, as unittest reads
        # it), in order, for the rig tier (test_gmem_rig.py).
        loader = unittest.TestLoader()
        loader.testNamePatterns = [
            p if '*' in p else '*%s*' % p
            for k, p in zip(sys.argv, sys.argv[1:]) if k == '-k'] or None
        for test in iter_tests(load_tests(loader, None, None)):
            print(test.id())
        sys.exit(0)
    QemuSystemTest.main()
