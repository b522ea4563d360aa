/*
 * Test guest: steps that let the host look at the VM between tests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

GUEST_TEST_EXPLICIT(hold, "stop at a checkpoint until the host injects an "
                    "NMI (needs checkpoints=1), e.g. to read QMP state "
                    "after the tests before it")
{
    if (!arg_u64("checkpoints", 0)) {
        return test_skip("checkpoints=1 not given");
    }
    test_checkpoint("holding");
    return TEST_PASS;
}
