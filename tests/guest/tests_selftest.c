/*
 * Test guest: tests of the harness itself. They run only when named, so
 * the host can prove that a failure or a skip really reaches it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "guest.h"

GUEST_TEST_EXPLICIT(selftest_fail, "always fails: the host must see it")
{
    return test_fail("failing on purpose (value=%lu)", arg_u64("value", 42));
}

GUEST_TEST_EXPLICIT(selftest_skip, "always skips: the host must see it")
{
    return test_skip("skipping on purpose");
}

GUEST_TEST_EXPLICIT(selftest_fault, "takes a page fault outside the "
                    "identity map: the trap handler must report it")
{
    (void)read_word(identity_map_limit());
    return test_fail("read beyond the identity map did not fault");
}
