/*
 * The launch plan's executor against a recording stand-in for the SEV-SNP
 * and TDX launch ioctls.
 *
 * A fake, because no SEV-SNP or TDX hardware exists on the machines these
 * tests run on. It enforces the rules Linux 7.2 applies (arch/x86/kvm/svm/
 * sev.c snp_launch_update(), vmx/tdx.c tdx_vcpu_init_mem_region() and
 * tdx_td_finalize(), virt/kvm/guest_memfd.c kvm_gmem_populate()): the range
 * must be private, page aligned, with a page aligned source, populated
 * once, with a valid type or flag, nothing after the finish, TDX vCPUs
 * initialized before memory. The plans real firmware yields are checked
 * by tests/functional/x86_64/test_gmem_launch_measurement.py.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/memalign.h"
#include "system/launch-plan.h"
#include "../../accel/kvm/gmem/launch-digest.h"

#define PAGE 4096

typedef struct Recorded {
    LaunchOpKind kind;
    uint64_t gfn_start;         /* SNP gfn_start / TDX gpa >> 12 */
    uint64_t uaddr;             /* SNP uaddr / TDX source_addr */
    uint64_t npages;
    uint8_t type;               /* SNP page type */
    uint32_t flags;             /* TDX flags */
    int cpu;
} Recorded;

/* The kernel as the stand-in models it. */
typedef struct StandIn {
    GHashTable *private_gfns;
    GHashTable *populated_gfns;
    GArray *log;                /* Recorded, in issue order */
    bool finished;
    bool tdx_vm_initialized;
    unsigned tdx_vcpus_initialized;
    unsigned nr_vcpus;
    bool make_private_forgets;  /* a broken manager, for one test */
    int fail_at;                /* issue() number that fails, or -1 */
    unsigned issued;
} StandIn;

static void stand_in_init(StandIn *k, unsigned nr_vcpus)
{
    *k = (StandIn) {
        .private_gfns = g_hash_table_new(g_int64_hash, g_int64_equal),
        .populated_gfns = g_hash_table_new(g_int64_hash, g_int64_equal),
        .log = g_array_new(false, true, sizeof(Recorded)),
        .nr_vcpus = nr_vcpus,
        .tdx_vm_initialized = true,     /* done at vCPU creation */
        .fail_at = -1,
    };
}

static void stand_in_free(StandIn *k)
{
    g_hash_table_foreach(k->private_gfns, (GHFunc)g_free, NULL);
    g_hash_table_foreach(k->populated_gfns, (GHFunc)g_free, NULL);
    g_hash_table_destroy(k->private_gfns);
    g_hash_table_destroy(k->populated_gfns);
    g_array_free(k->log, true);
}

static void gfn_set(GHashTable *t, uint64_t gfn)
{
    if (!g_hash_table_contains(t, &gfn)) {
        g_hash_table_add(t, g_memdup2(&gfn, sizeof(gfn)));
    }
}

static int stand_in_make_private(uint64_t gpa, uint64_t size, void *opaque,
                                 Error **errp)
{
    StandIn *k = opaque;

    if (!k->make_private_forgets) {
        for (uint64_t a = gpa; a < gpa + size; a += PAGE) {
            gfn_set(k->private_gfns, a / PAGE);
        }
    }
    return 0;
}

/* kvm_gmem_populate(): private, and each page once. */
static int stand_in_populate(StandIn *k, uint64_t gpa, uint64_t npages,
                             Error **errp)
{
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t gfn = gpa / PAGE + i;

        if (!g_hash_table_contains(k->private_gfns, &gfn)) {
            error_setg(errp, "Invalid argument (gfn 0x%" PRIx64
                       " is not private)", gfn);
            return -EINVAL;
        }
        if (g_hash_table_contains(k->populated_gfns, &gfn)) {
            error_setg(errp, "File exists (gfn 0x%" PRIx64 ")", gfn);
            return -EEXIST;
        }
    }
    for (uint64_t i = 0; i < npages; i++) {
        gfn_set(k->populated_gfns, gpa / PAGE + i);
    }
    return 0;
}

static int stand_in_issue(const LaunchOp *op, void *opaque, Error **errp)
{
    StandIn *k = opaque;
    Recorded r = { .kind = op->kind, .cpu = op->cpu_index };

    if ((int)k->issued++ == k->fail_at) {
        error_setg(errp, "Input/output error (firmware error 3)");
        return -EIO;
    }
    if (k->finished) {
        error_setg(errp, "Invalid argument (after the finish)");
        return -EINVAL;
    }
    switch (op->kind) {
    case LAUNCH_OP_SNP_UPDATE:
        r.gfn_start = op->gpa / PAGE;
        r.uaddr = (uintptr_t)op->src;
        r.npages = op->size / PAGE;
        r.type = op->page_type;
        if (!op->size || op->size % PAGE || op->gpa % PAGE ||
            r.uaddr % PAGE || op->page_type < 1 || op->page_type > 6 ||
            op->page_type == 2 /* VMSA: only the kernel adds those */) {
            error_setg(errp, "Invalid argument");
            return -EINVAL;
        }
        if (stand_in_populate(k, op->gpa, r.npages, errp)) {
            return -1;
        }
        break;
    case LAUNCH_OP_SNP_VMSA:
        break;                  /* part of LAUNCH_FINISH */
    case LAUNCH_OP_SNP_FINISH:
    case LAUNCH_OP_TDX_FINALIZE:
        if (op->kind == LAUNCH_OP_TDX_FINALIZE &&
            k->tdx_vcpus_initialized != k->nr_vcpus) {
            error_setg(errp, "Invalid argument (vCPUs not initialized)");
            return -EINVAL;
        }
        k->finished = true;
        break;
    case LAUNCH_OP_TDX_INIT_VM:
        if (!k->tdx_vm_initialized) {
            error_setg(errp, "Invalid argument");
            return -EINVAL;
        }
        break;
    case LAUNCH_OP_TDX_INIT_VCPU:
        k->tdx_vcpus_initialized++;
        break;
    case LAUNCH_OP_TDX_MEM_REGION:
        r.gfn_start = op->gpa / PAGE;
        r.uaddr = (uintptr_t)op->src;
        r.npages = op->size / PAGE;
        r.flags = op->measure ? 1 /* KVM_TDX_MEASURE_MEMORY_REGION */ : 0;
        if (k->tdx_vcpus_initialized != k->nr_vcpus || !r.npages ||
            op->gpa % PAGE || r.uaddr % PAGE) {
            error_setg(errp, "Invalid argument");
            return -EINVAL;
        }
        if (stand_in_populate(k, op->gpa, r.npages, errp)) {
            return -1;
        }
        break;
    }
    g_array_append_val(k->log, r);
    return 0;
}

static const LaunchPlanBackend stand_in = {
    .make_private = stand_in_make_private,
    .issue = stand_in_issue,
};

typedef struct Fixture {
    uint8_t *mem;               /* page-aligned sources */
    uint8_t vmsa[PAGE];
} Fixture;

static void add(LaunchPlan *plan, LaunchOp op)
{
    if (op.kind != LAUNCH_OP_SNP_VMSA && op.kind != LAUNCH_OP_TDX_INIT_VCPU) {
        op.cpu_index = -1;
    }
    launch_plan_add(plan, &op, &error_abort);
}

static LaunchPlan *snp_plan(Fixture *f)
{
    LaunchPlan *plan = launch_plan_new(LAUNCH_PLAN_SEV_SNP);

    f->mem = qemu_memalign(PAGE, 8 * PAGE);
    for (int i = 0; i < 8 * PAGE; i++) {
        f->mem[i] = i * 3;
    }
    memset(f->vmsa, 0x5a, sizeof(f->vmsa));
    add(plan, (LaunchOp) { LAUNCH_OP_SNP_UPDATE, 0xffffc000, 4 * PAGE, 1,
                           .src = f->mem });
    add(plan, (LaunchOp) { LAUNCH_OP_SNP_UPDATE, 0x800000, 2 * PAGE, 3,
                           .src = f->mem + 4 * PAGE });
    add(plan, (LaunchOp) { LAUNCH_OP_SNP_UPDATE, 0x802000, PAGE, 5,
                           .src = f->mem + 6 * PAGE });
    add(plan, (LaunchOp) { LAUNCH_OP_SNP_UPDATE, 0x803000, PAGE, 6,
                           .src = f->mem + 7 * PAGE });
    for (int cpu = 0; cpu < 2; cpu++) {
        add(plan, (LaunchOp) { LAUNCH_OP_SNP_VMSA, 0xfffffffff000ULL, PAGE,
                               .cpu_index = cpu, .src = f->vmsa });
    }
    add(plan, (LaunchOp) { LAUNCH_OP_SNP_FINISH });
    return plan;
}

/* The recorded command sequence is the plan, field by field. */
static void assert_recorded_is_plan(StandIn *k, LaunchPlan *plan)
{
    g_assert_cmpuint(k->log->len, ==, launch_plan_length(plan));
    for (unsigned i = 0; i < k->log->len; i++) {
        const Recorded *r = &g_array_index(k->log, Recorded, i);
        const LaunchOp *op = launch_plan_op(plan, i);

        g_assert_cmpint(r->kind, ==, op->kind);
        g_assert_cmpint(r->cpu, ==, op->cpu_index);
        if (launch_op_is_memory(op)) {
            g_assert_cmphex(r->gfn_start, ==, op->gpa / PAGE);
            g_assert_cmphex(r->uaddr, ==, (uintptr_t)op->src);
            g_assert_cmpuint(r->npages, ==, op->size / PAGE);
            g_assert_cmpuint(r->uaddr % PAGE, ==, 0);
        }
        if (op->kind == LAUNCH_OP_SNP_UPDATE) {
            g_assert_cmpuint(r->type, ==, op->page_type);
        }
        if (op->kind == LAUNCH_OP_TDX_MEM_REGION) {
            g_assert_cmpuint(r->flags, ==, op->measure ? 1 : 0);
        }
    }
}

static void test_snp_sequence(void)
{
    Fixture f;
    g_autoptr(LaunchPlan) plan = snp_plan(&f);
    StandIn k;
    const Recorded *last;

    stand_in_init(&k, 2);
    g_assert_true(launch_plan_execute(plan, &stand_in, &k, &error_abort));
    assert_recorded_is_plan(&k, plan);
    last = &g_array_index(k.log, Recorded, k.log->len - 1);
    g_assert_cmpint(last->kind, ==, LAUNCH_OP_SNP_FINISH);
    /* Every populated page was made private, and only those. */
    g_assert_cmpuint(g_hash_table_size(k.populated_gfns), ==, 8);
    g_assert_cmpuint(g_hash_table_size(k.private_gfns), ==, 8);
    stand_in_free(&k);
    qemu_vfree(f.mem);
}

static void test_snp_digest_walks_the_plan(void)
{
    Fixture f;
    g_autoptr(LaunchPlan) plan = snp_plan(&f);
    uint8_t got[LAUNCH_DIGEST_SIZE];
    SnpLaunchDigest d;
    static const struct { uint64_t gpa; uint8_t type; int src; } pages[] = {
        { 0xffffc000, 1, 0 }, { 0xffffd000, 1, 1 }, { 0xffffe000, 1, 2 },
        { 0xfffff000, 1, 3 }, { 0x800000, 3, -1 }, { 0x801000, 3, -1 },
        { 0x802000, 5, -1 }, { 0x803000, 6, -1 },
    };

    snp_launch_digest_init(&d);
    for (int i = 0; i < ARRAY_SIZE(pages); i++) {
        snp_launch_digest_page(&d, pages[i].gpa, pages[i].type,
                               pages[i].src < 0 ? NULL :
                               f.mem + pages[i].src * PAGE);
    }
    snp_launch_digest_page(&d, 0xfffffffff000ULL, 2, f.vmsa);
    snp_launch_digest_page(&d, 0xfffffffff000ULL, 2, f.vmsa);
    launch_plan_measure(plan, got);
    g_assert_cmpmem(got, sizeof(got), d.digest, sizeof(d.digest));
    qemu_vfree(f.mem);
}

static void test_tdx_sequence(void)
{
    g_autoptr(LaunchPlan) plan = launch_plan_new(LAUNCH_PLAN_TDX);
    uint8_t *mem = qemu_memalign(PAGE, 3 * PAGE);
    StandIn k;

    memset(mem, 0xa5, 3 * PAGE);
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_INIT_VM });
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_INIT_VCPU, .cpu_index = 0 });
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_INIT_VCPU, .cpu_index = 1 });
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_MEM_REGION, 0xffffe000, 2 * PAGE,
                           .measure = true, .src = mem });
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_MEM_REGION, 0x800000, PAGE,
                           .src = mem + 2 * PAGE });
    add(plan, (LaunchOp) { LAUNCH_OP_TDX_FINALIZE });

    stand_in_init(&k, 2);
    g_assert_true(launch_plan_execute(plan, &stand_in, &k, &error_abort));
    assert_recorded_is_plan(&k, plan);
    g_assert_true(k.finished);
    stand_in_free(&k);
    qemu_vfree(mem);
}

/* The stand-in is not vacuous: a manager that does not convert is caught. */
static void test_range_not_private_is_refused(void)
{
    Fixture f;
    g_autoptr(LaunchPlan) plan = snp_plan(&f);
    Error *err = NULL;
    StandIn k;

    stand_in_init(&k, 2);
    k.make_private_forgets = true;
    g_assert_false(launch_plan_execute(plan, &stand_in, &k, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "is not private"));
    g_assert_cmpuint(k.log->len, ==, 0);
    error_free(err);
    stand_in_free(&k);
    qemu_vfree(f.mem);
}

/* A failing command: GPA, page type and the kernel's error; nothing after. */
static void test_failure_names_the_operation(void)
{
    Fixture f;
    g_autoptr(LaunchPlan) plan = snp_plan(&f);
    Error *err = NULL;
    StandIn k;

    stand_in_init(&k, 2);
    k.fail_at = 2;
    g_assert_false(launch_plan_execute(plan, &stand_in, &k, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "launch operation 2, snp-launch-update at 0x802000 "
                    "+0x1000 (secrets): Input/output error (firmware "
                    "error 3)");
    g_assert_cmpuint(k.log->len, ==, 2);
    error_free(err);
    stand_in_free(&k);
    qemu_vfree(f.mem);
}

static int silent_failure(const LaunchOp *op, void *opaque, Error **errp)
{
    return -1;
}

/* A backend that fails without saying why still gets a named error. */
static void test_silent_backend_failure(void)
{
    Fixture f;
    g_autoptr(LaunchPlan) plan = snp_plan(&f);
    const LaunchPlanBackend silent = {
        .make_private = stand_in_make_private,
        .issue = silent_failure,
    };
    Error *err = NULL;
    StandIn k;

    stand_in_init(&k, 2);
    g_assert_false(launch_plan_execute(plan, &silent, &k, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "launch operation 0, snp-launch-update at 0xffffc000 "
                    "+0x4000 (normal): failed");
    error_free(err);
    stand_in_free(&k);
    qemu_vfree(f.mem);
}

static void assert_refused(LaunchPlan *plan, LaunchOp op, const char *why)
{
    Error *err = NULL;

    g_assert_false(launch_plan_add(plan, &op, &err));
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), why)) {
        g_error("'%s' lacks '%s'", error_get_pretty(err), why);
    }
    error_free(err);
}

static void test_add_validates(void)
{
    g_autoptr(LaunchPlan) plan = launch_plan_new(LAUNCH_PLAN_SEV_SNP);
    uint8_t *mem = qemu_memalign(PAGE, 4 * PAGE);
    LaunchOp ok = { LAUNCH_OP_SNP_UPDATE, 0x10000, 2 * PAGE, 1,
                    .cpu_index = -1, .src = mem };
    LaunchOp op;

    launch_plan_add(plan, &ok, &error_abort);
    op = ok, op.gpa = 0x20800;
    assert_refused(plan, op, "whole number of 4 KiB pages");
    op = ok, op.gpa = 0x20000, op.size = 100;
    assert_refused(plan, op, "whole number of 4 KiB pages");
    op = ok, op.gpa = 0x20000, op.size = 0;
    assert_refused(plan, op, "whole number of 4 KiB pages");
    op = ok, op.gpa = 0x20000, op.src = mem + 8;
    assert_refused(plan, op, "4 KiB aligned source");
    op = ok, op.gpa = 0x20000, op.src = NULL;
    assert_refused(plan, op, "4 KiB aligned source");
    op = ok, op.gpa = 0xfffffffffffff000ULL, op.size = 2 * PAGE;
    assert_refused(plan, op, "wraps past the end");
    op = ok, op.gpa = 0x11000;
    assert_refused(plan, op, "overlaps operation 0");
    op = ok, op.gpa = 0xf000;
    assert_refused(plan, op, "overlaps operation 0");
    op = ok, op.gpa = 0x12000;
    launch_plan_add(plan, &op, &error_abort);       /* adjacent is fine */
    launch_plan_seal(plan);
    op = ok, op.gpa = 0x30000;
    assert_refused(plan, op, "after the plan was complete");
    g_assert_cmpuint(launch_plan_length(plan), ==, 2);
    qemu_vfree(mem);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/launch-plan/snp/sequence", test_snp_sequence);
    g_test_add_func("/launch-plan/snp/digest", test_snp_digest_walks_the_plan);
    g_test_add_func("/launch-plan/tdx/sequence", test_tdx_sequence);
    g_test_add_func("/launch-plan/not-private",
                    test_range_not_private_is_refused);
    g_test_add_func("/launch-plan/failure", test_failure_names_the_operation);
    g_test_add_func("/launch-plan/silent-failure",
                    test_silent_backend_failure);
    g_test_add_func("/launch-plan/add-validates", test_add_validates);
    return g_test_run();
}
