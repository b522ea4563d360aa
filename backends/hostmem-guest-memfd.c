/*
 * Host memory backend on KVM guest_memfd, used in place
 *
 * One guest_memfd, created with GUEST_MEMFD_FLAG_MMAP | INIT_SHARED, is
 * both the guest's memory (a KVM_MEM_GUEST_MEMFD memslot) and QEMU's
 * mapping of it: one copy of every page, freed for real by a discard
 * (fallocate(PUNCH_HOLE) on the same file).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qom/object_interfaces.h"
#include "migration/blocker.h"
#include "hw/boards.h"
#include <linux/kvm.h>
#include "system/hostmem.h"
#include "system/kvm.h"
#include "system/kvm-gmem.h"
#include "system/ramblock.h"

#define TYPE_MEMORY_BACKEND_GUEST_MEMFD "memory-backend-guest-memfd"

OBJECT_DECLARE_SIMPLE_TYPE(HostMemoryBackendGuestMemfd,
                           MEMORY_BACKEND_GUEST_MEMFD)

struct HostMemoryBackendGuestMemfd {
    HostMemoryBackend parent_obj;
    int fd;                     /* the guest_memfd; the RAMBlock has a dup */
    Error *migration_blocker;
};

static bool gmem_backend_memory_alloc(HostMemoryBackend *backend,
                                      Error **errp)
{
    HostMemoryBackendGuestMemfd *m = MEMORY_BACKEND_GUEST_MEMFD(backend);
    g_autofree char *name = host_memory_backend_get_name(backend);
    g_autofree char *owner = NULL;
    uint32_t ram_flags;
    int map_fd;

    if (!backend->size) {
        error_setg(errp, "can't create backend with size 0");
        return false;
    }
    if (!backend->share) {
        error_setg(errp, "memory-backend-guest-memfd is always shared with "
                   "the guest: share=off is not possible");
        return false;
    }
    if (backend->guest_memfd) {
        /*
         * The machine wants split backing (a confidential guest): private
         * memory would need in-place conversion, which needs the VM type
         * to offer INIT_SHARED; kvm_gmem_create_in_place() says why not.
         */
        error_setg(errp, "memory-backend-guest-memfd: in-place guest_memfd "
                   "is not available for confidential guests yet");
        return false;
    }
    /*
     * x86 SMRAM gives RAM a second memslot (KVM's SMM address space), and
     * KVM lets one guest_memfd range back only one memslot. It is too late
     * to turn SMM off here: KVM set up its SMM address space already.
     */
    if (kvm_enabled() &&
        object_property_find(OBJECT(current_machine), "smm") &&
        kvm_check_extension(kvm_state, KVM_CAP_X86_SMM)) {
        g_autofree char *smm = object_property_get_str(OBJECT(current_machine),
                                                       "smm", &error_abort);

        if (strcmp(smm, "off")) {
            error_setg(errp, "memory-backend-guest-memfd needs -machine "
                       "smm=off: SMRAM would map the guest_memfd a second "
                       "time");
            return false;
        }
    }
    owner = g_strdup_printf("memory-backend-guest-memfd '%s'", name);
    if (kvm_gmem_block_migration(&m->migration_blocker, owner, errp) < 0) {
        return false;
    }
    m->fd = kvm_gmem_create_in_place(backend->size, errp);
    if (m->fd < 0) {
        return false;
    }
    map_fd = dup(m->fd);
    if (map_fd < 0) {
        error_setg_errno(errp, errno, "cannot duplicate the guest_memfd");
        return false;
    }
    backend->aligned = true;
    ram_flags = RAM_SHARED | (backend->reserve ? 0 : RAM_NORESERVE);
    if (!memory_region_init_ram_from_fd(&backend->mr, OBJECT(backend), name,
                                        backend->size, ram_flags, map_fd, 0,
                                        errp)) {
        close(map_fd);
        return false;
    }
    kvm_gmem_attach_in_place(backend->mr.ram_block, m->fd);
    return true;
}

static void gmem_backend_instance_init(Object *obj)
{
    HostMemoryBackendGuestMemfd *m = MEMORY_BACKEND_GUEST_MEMFD(obj);

    m->fd = -1;
    /* Guest and QEMU use the same pages; nothing else makes sense. */
    MEMORY_BACKEND(obj)->share = true;
}

static void gmem_backend_instance_finalize(Object *obj)
{
    HostMemoryBackendGuestMemfd *m = MEMORY_BACKEND_GUEST_MEMFD(obj);

    migrate_del_blocker(&m->migration_blocker);
    if (m->fd >= 0) {
        kvm_gmem_detach_in_place(MEMORY_BACKEND(obj)->mr.ram_block);
        close(m->fd);
    }
}

static void gmem_backend_class_init(ObjectClass *oc, const void *data)
{
    HostMemoryBackendClass *bc = MEMORY_BACKEND_CLASS(oc);

    bc->alloc = gmem_backend_memory_alloc;
}

static const TypeInfo gmem_backend_info = {
    .name = TYPE_MEMORY_BACKEND_GUEST_MEMFD,
    .parent = TYPE_MEMORY_BACKEND,
    .instance_init = gmem_backend_instance_init,
    .instance_finalize = gmem_backend_instance_finalize,
    .class_init = gmem_backend_class_init,
    .instance_size = sizeof(HostMemoryBackendGuestMemfd),
};

static void gmem_backend_register_types(void)
{
    type_register_static(&gmem_backend_info);
}

type_init(gmem_backend_register_types);
