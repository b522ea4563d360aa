/*
 * The VM's launch: one launch plan per machine, completed by the
 * confidential guest's build function and executed once; the dry run
 * (measure-only=on) completes the same plan, prints it and exits; QMP
 * query-launch-measurement and HMP info launch-measurement show it.
 *
 * Invariant: a dry run issues no launch command and opens no KVM device;
 * it runs the same build function as a launch, so both yield one plan.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qapi/qapi-commands-launch-measurement.h"
#include "qapi/qapi-visit-launch-measurement.h"
#include "qapi/qobject-output-visitor.h"
#include "qobject/qjson.h"
#include "qobject/qobject.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "system/address-spaces.h"
#include "system/system.h"
#include "system/confidential-guest-support.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/launch-plan.h"
#include "launch-digest.h"
#include "trace.h"

static struct {
    LaunchPlan *plan;
    LaunchPlanBuildFn build[LAUNCH_PLAN_TDX + 1];
    bool complete;              /* built, checked and measured */
    bool launched;              /* executed */
    uint8_t measurement[LAUNCH_DIGEST_SIZE];
    bool dry_run;
    Object *dry_run_cgs;        /* the object that asked for it */
    Notifier dry_run_notifier;
} lp;

static const char *const launch_plan_type_name[] = {
    [LAUNCH_PLAN_SEV_SNP] = "sev-snp",
    [LAUNCH_PLAN_TDX] = "tdx",
};

/* Every memory operation lies in guest RAM (the firmware's RAM included). */
static bool launch_plan_check_guest_ram(const LaunchPlan *plan, Error **errp)
{
    for (unsigned i = 0; i < launch_plan_length(plan); i++) {
        const LaunchOp *op = launch_plan_op(plan, i);
        MemoryRegionSection s;
        bool ram;

        if (!launch_op_is_memory(op)) {
            continue;
        }
        s = memory_region_find(get_system_memory(), op->gpa, op->size);
        ram = s.mr && memory_region_is_ram(s.mr) &&
              s.offset_within_address_space == op->gpa &&
              int128_get64(s.size) == op->size;
        if (s.mr) {
            memory_region_unref(s.mr);
        }
        if (!ram) {
            g_autofree char *what = launch_op_describe(op);

            error_setg(errp, "launch operation %u, %s: not all of it is "
                       "guest RAM", i, what);
            return false;
        }
    }
    return true;
}

/*
 * Before the plan is measured: the discards still pending over its
 * memory operations' ranges are done (issue 24, defect 8). One over a
 * source, queued by a conversion before the launch, would otherwise free
 * it from the async worker between the hash and the launch command, and
 * the measurement would cover pages never populated. Done first, the
 * source reads what the command will read, as with discard=sync.
 */
static bool launch_plan_settle_sources(const LaunchPlan *plan, Error **errp)
{
    for (unsigned i = 0; i < launch_plan_length(plan); i++) {
        const LaunchOp *op = launch_plan_op(plan, i);

        if (launch_op_is_memory(op) &&
            kvm_gmem_launch_settle(op->gpa, op->size, errp)) {
            return false;
        }
    }
    return true;
}

/* Run the build function and measure: the plan is then fixed. */
static bool launch_plan_complete(LaunchPlanType type, Object *cgs,
                                 Error **errp)
{
    LaunchPlan *plan = launch_plan_of(type);

    if (lp.complete) {
        error_setg(errp, "the %s launch plan was already executed",
                   launch_plan_type_name[type]);
        return false;
    }
    if (!lp.build[type](cgs, plan, errp) ||
        !launch_plan_check_guest_ram(plan, errp) ||
        (!lp.dry_run && !launch_plan_settle_sources(plan, errp))) {
        return false;
    }
    launch_plan_seal(plan);
    launch_plan_measure(plan, lp.measurement);
    lp.complete = true;
    trace_launch_plan_complete(launch_plan_type_name[type],
                               launch_plan_length(plan));
    for (unsigned i = 0; i < launch_plan_length(plan); i++) {
        g_autofree char *what = launch_op_describe(launch_plan_op(plan, i));

        trace_launch_plan_op(i, what);
    }
    return true;
}

int launch_plan_gmem_make_private(uint64_t gpa, uint64_t size, void *opaque,
                                  Error **errp)
{
    /* The shared copy stays: it is the command's source. */
    return kvm_gmem_launch_private(gpa, size, true, errp);
}

bool launch_plan_launch(LaunchPlanType type, Object *cgs,
                        const LaunchPlanBackend *be, void *opaque,
                        Error **errp)
{
    if (!launch_plan_complete(type, cgs, errp) ||
        !launch_plan_execute(lp.plan, be, opaque, errp)) {
        return false;
    }
    lp.launched = true;
    /* Neither QEMU nor the kernel needs the sources any more. */
    for (unsigned i = 0; i < launch_plan_length(lp.plan); i++) {
        const LaunchOp *op = launch_plan_op(lp.plan, i);

        if (launch_op_is_memory(op)) {
            kvm_gmem_launch_discard_shared(op->gpa, op->size);
        }
    }
    return true;
}

LaunchPlan *launch_plan_of(LaunchPlanType type)
{
    if (!lp.plan) {
        lp.plan = launch_plan_new(type);
    }
    return lp.plan;
}

bool launch_plan_dry_run(void)
{
    return lp.dry_run;
}

static LaunchMeasurement *launch_plan_info(const LaunchPlan *plan)
{
    LaunchMeasurement *info = g_new0(LaunchMeasurement, 1);
    LaunchOperationList **tail = &info->operations;

    info->type = launch_plan_type(plan) == LAUNCH_PLAN_SEV_SNP ?
                 LAUNCH_MEASUREMENT_TYPE_SEV_SNP : LAUNCH_MEASUREMENT_TYPE_TDX;
    info->measurement = g_string_free(
        qemu_hexdump_line(NULL, lp.measurement, LAUNCH_DIGEST_SIZE, 0, 0),
        false);
    info->launched = lp.launched;
    for (unsigned i = 0; i < launch_plan_length(plan); i++) {
        const LaunchOp *op = launch_plan_op(plan, i);
        LaunchOperation *o = g_new0(LaunchOperation, 1);

        o->command = g_strdup(launch_op_command(op->kind));
        if (launch_op_has_page(op)) {
            o->has_gpa = o->has_size = true;
            o->gpa = op->gpa;
            o->size = op->size;
        }
        if (op->kind == LAUNCH_OP_SNP_UPDATE ||
            op->kind == LAUNCH_OP_SNP_VMSA) {
            o->page_type = g_strdup(op->kind == LAUNCH_OP_SNP_VMSA ? "vmsa" :
                                    snp_page_type_name(op->page_type));
        }
        if (op->kind == LAUNCH_OP_TDX_MEM_REGION) {
            o->has_measured = true;
            o->measured = op->measure;
        }
        if (op->cpu_index >= 0) {
            o->has_cpu_index = true;
            o->cpu_index = op->cpu_index;
        }
        QAPI_LIST_APPEND(tail, o);
    }
    return info;
}

LaunchMeasurement *qmp_query_launch_measurement(Error **errp)
{
    if (!lp.complete) {
        error_setg(errp, "no launch plan: the VM is not a SEV-SNP or TDX "
                   "guest, or is not launched yet (SEV-SNP launches when "
                   "the VM first runs)");
        return NULL;
    }
    return launch_plan_info(lp.plan);
}

void hmp_info_launch_measurement(Monitor *mon, const QDict *qdict)
{
    g_autoptr(LaunchMeasurement) info = NULL;
    Error *err = NULL;
    unsigned i = 0;

    info = qmp_query_launch_measurement(&err);
    if (hmp_handle_error(mon, err)) {
        return;
    }
    monitor_printf(mon, "%s %s: %s\n", LaunchMeasurementType_str(info->type),
                   info->type == LAUNCH_MEASUREMENT_TYPE_TDX ? "MRTD" :
                   "launch digest", info->measurement);
    monitor_printf(mon, "plan%s:\n", info->launched ? " (executed)" : "");
    for (LaunchOperationList *l = info->operations; l; l = l->next, i++) {
        LaunchOperation *o = l->value;

        monitor_printf(mon, "%4u %s", i, o->command);
        if (o->has_gpa) {
            monitor_printf(mon, " gpa 0x%" PRIx64 " size 0x%" PRIx64, o->gpa,
                           o->size);
        }
        if (o->page_type) {
            monitor_printf(mon, " %s", o->page_type);
        }
        if (o->has_measured) {
            monitor_printf(mon, " %s", o->measured ? "measured" : "unmeasured");
        }
        if (o->has_cpu_index) {
            monitor_printf(mon, " cpu %" PRId64, o->cpu_index);
        }
        monitor_printf(mon, "\n");
    }
}

/*
 * The dry run, once the machine is built: complete the plan as a launch
 * would, print it with its measurement as one JSON object, and exit
 * before any vCPU runs or any launch command could be issued.
 */
static void launch_plan_dry_run_done(Notifier *n, void *unused)
{
    MachineState *ms = MACHINE(qdev_get_machine());
    LaunchPlanType type = object_dynamic_cast(lp.dry_run_cgs, "tdx-guest") ?
                          LAUNCH_PLAN_TDX : LAUNCH_PLAN_SEV_SNP;
    g_autoptr(LaunchMeasurement) info = NULL;
    g_autoptr(GString) json = NULL;
    Error *err = NULL;
    QObject *obj;
    Visitor *v;

    if (OBJECT(ms->cgs) != lp.dry_run_cgs) {
        error_report("measure-only=on: %s is not the machine's "
                     "confidential-guest-support",
                     object_get_canonical_path_component(lp.dry_run_cgs));
        exit(1);
    }
    if (kvm_enabled()) {
        error_report("measure-only=on is a dry run that must not use KVM: "
                     "leave out -accel kvm (the default accelerator is "
                     "enough)");
        exit(1);
    }
    if (!launch_plan_complete(type, OBJECT(ms->cgs), &err)) {
        error_report_err(err);
        exit(1);
    }
    info = launch_plan_info(lp.plan);
    v = qobject_output_visitor_new(&obj);
    visit_type_LaunchMeasurement(v, NULL, &info, &error_abort);
    visit_complete(v, &obj);
    visit_free(v);
    json = qobject_to_json(obj);
    qobject_unref(obj);
    printf("%s\n", json->str);
    fflush(stdout);
    exit(0);
}

static void launch_plan_get_measure_only(Object *obj, Visitor *v,
                                         const char *name, void *opaque,
                                         Error **errp)
{
    bool value = lp.dry_run;

    visit_type_bool(v, name, &value, errp);
}

static void launch_plan_set_measure_only(Object *obj, Visitor *v,
                                         const char *name, void *opaque,
                                         Error **errp)
{
    bool value;

    if (!visit_type_bool(v, name, &value, errp)) {
        return;
    }
    if (phase_check(PHASE_MACHINE_INITIALIZED)) {
        error_setg(errp, "measure-only can be set only on the command line, "
                   "before the machine is built");
        return;
    }
    if (value && lp.dry_run && lp.dry_run_cgs != obj) {
        error_setg(errp, "measure-only: only one object can ask for the "
                   "dry run");
        return;
    }
    if (value && !lp.dry_run) {
        lp.dry_run = true;
        lp.dry_run_cgs = obj;
        /* Nothing is launched: plain RAM instead of KVM's guest_memfd. */
        CONFIDENTIAL_GUEST_SUPPORT(obj)->require_guest_memfd = false;
        lp.dry_run_notifier.notify = launch_plan_dry_run_done;
        qemu_add_machine_init_done_notifier(&lp.dry_run_notifier);
    }
}

void launch_plan_class_init(ObjectClass *oc, LaunchPlanType type,
                            LaunchPlanBuildFn build)
{
    lp.build[type] = build;
    object_class_property_add(oc, "measure-only", "bool",
                              launch_plan_get_measure_only,
                              launch_plan_set_measure_only, NULL, NULL);
    object_class_property_set_description(oc, "measure-only",
        "Dry run: build the machine and its launch plan without KVM, print "
        "the plan and the launch measurement it yields as JSON on stdout, "
        "and exit");
}
