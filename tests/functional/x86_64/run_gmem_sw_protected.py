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
    """
    return loader.loadTestsFromNames(MODULES)


if __name__ == '__main__':
    QemuSystemTest.main()
