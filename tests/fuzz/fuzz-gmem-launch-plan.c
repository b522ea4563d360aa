/*
 * libFuzzer harness: random launch operations into a plan (GPAs, sizes,
 * sources, kinds and page types anywhere, overlapping or not), then the
 * measurement and the executor against a stand-in backend. A stand-in,
 * because there are no SEV-SNP or TDX ioctls here. Checked: every
 * accepted memory operation is whole aligned pages with an aligned source
 * and overlaps no other; every refusal breaks one of those rules; the
 * executor makes each range private before issuing it and issues the
 * plan in order.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/range.h"
#include "system/launch-plan.h"
#include "launch-digest.h"

#define PAGE 4096
#define MAX_OPS 64

static uint8_t source[16 * PAGE] __attribute__((aligned(PAGE)));

typedef struct StandIn {
    uint64_t private_gpa, private_size;     /* the last make_private() */
    unsigned issued;
    const LaunchPlan *plan;
} StandIn;

static int make_private(uint64_t gpa, uint64_t size, void *opaque,
                        Error **errp)
{
    StandIn *k = opaque;

    k->private_gpa = gpa;
    k->private_size = size;
    return 0;
}

static int issue(const LaunchOp *op, void *opaque, Error **errp)
{
    StandIn *k = opaque;

    assert(op == launch_plan_op(k->plan, k->issued));
    if (launch_op_is_memory(op)) {
        assert(k->private_gpa == op->gpa && k->private_size == op->size);
    }
    k->issued++;
    return 0;
}

static const LaunchPlanBackend backend = {
    .make_private = make_private,
    .issue = issue,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(LaunchPlan) plan = NULL;
    uint8_t digest[LAUNCH_DIGEST_SIZE];
    StandIn k = { 0 };

    if (!size) {
        return 0;
    }
    plan = launch_plan_new(data[0] & 1 ? LAUNCH_PLAN_TDX : LAUNCH_PLAN_SEV_SNP);
    for (size_t i = 1; i + 8 <= size && launch_plan_length(plan) < MAX_OPS;
         i += 8) {
        const uint8_t *d = data + i;
        LaunchOp op = {
            .kind = d[0] % (LAUNCH_OP_TDX_FINALIZE + 1),
            /* Near 0, or near the top of the address space. */
            .gpa = (d[1] & 0x80 ? ~0ULL << 20 : 0) |
                   ((uint64_t)(d[1] & 0x3f) << 12) | (d[2] & 0x10 ? d[2] : 0),
            .size = (uint64_t)(d[3] & 0xf) << 12 | (d[4] & 0x1 ? d[5] : 0),
            .page_type = d[6] % 8,
            .measure = d[6] & 0x80,
            .cpu_index = d[7] & 3,
            .src = d[7] & 0x80 ? NULL : source + ((d[7] & 0x7) << 12) +
                   (d[7] & 0x40 ? 8 : 0),
        };
        Error *err = NULL;
        bool memory = launch_op_is_memory(&op);
        bool bad = false;

        if (memory) {
            bool overlap = false;

            /* Keep sources within the buffer the plan reads. */
            if (op.size > sizeof(source) - 8 * PAGE) {
                op.size &= 0x7000;
            }
            for (unsigned j = 0; j < launch_plan_length(plan); j++) {
                const LaunchOp *o = launch_plan_op(plan, j);

                overlap |= launch_op_is_memory(o) &&
                           ranges_overlap(o->gpa, o->size, op.gpa, op.size);
            }
            bad = !op.size || (op.gpa | op.size) % PAGE ||
                  op.gpa + op.size < op.gpa || !op.src ||
                  (uintptr_t)op.src % PAGE || overlap;
        } else if (op.kind == LAUNCH_OP_SNP_VMSA) {
            op.src = source;
        }
        if (launch_plan_add(plan, &op, &err)) {
            assert(!bad);
        } else {
            assert(bad && err);
            error_free(err);
        }
    }
    launch_plan_measure(plan, digest);
    k.plan = plan;
    assert(launch_plan_execute(plan, &backend, &k, &error_abort));
    assert(k.issued == launch_plan_length(plan));
    return 0;
}
