/*
 * KVM guest_memfd layer: who owns private/shared state, and how it starts.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_GMEM_H
#define SYSTEM_KVM_GMEM_H

#include "system/memory.h"
#include "system/kvm.h"
#include "system/ramblock.h"

/*
 * The state guest_memfd-backed memory has when its memslot appears.
 * SEV-SNP and TDX launch into private memory, which is the default; a
 * confidential guest type whose guests boot from shared memory (e.g.
 * sw-protected-vm) says so from its kvm_init(), before any memslot exists.
 */
void kvm_gmem_set_initially_shared(bool shared);

/*
 * A guest_memfd-backed memslot of @size bytes at guest physical @start,
 * mapped at @host in QEMU, was just registered with KVM: give it its
 * attributes as the record has them. A part KVM refuses stays unsettled
 * and is retried (docs/devel/kvm-gmem.rst); QEMU runs on.
 */
void kvm_gmem_slot_added(MemoryRegion *mr, hwaddr start, uint64_t size,
                         void *host);

/*
 * Launch (SEV-SNP LAUNCH_UPDATE, IGVM required memory): make a range
 * private before the launch command that needs it. @keep_shared keeps the
 * shared copy, which LAUNCH_UPDATE reads as its source. Not counted as a
 * request. Returns 0, or -1 with @errp set.
 */
int kvm_gmem_launch_private(uint64_t gpa, uint64_t size, bool keep_shared,
                            Error **errp);

/*
 * Launch, before the plan is measured: every discard still pending over
 * [@gpa, @gpa + @size) (guest-memfd-discard=async, or one that failed) is
 * done now, so that the source the measurement reads is the one the
 * launch command reads: the async worker cannot free it in between.
 * Returns 0, or -1 with @errp set if one cannot be done.
 */
int kvm_gmem_launch_settle(uint64_t gpa, uint64_t size, Error **errp);

/*
 * Launch is done: the shared copies of the private pages in
 * [@gpa, @gpa + @size), which served as launch sources, are stale; free
 * them with the discard policy, and the stale rest of every wholly
 * private transparent huge page extent they lie in (else khugepaged
 * collapses the extent again, the freed sources with it).
 */
void kvm_gmem_launch_discard_shared(uint64_t gpa, uint64_t size);

/*
 * KVM_HC_MAP_GPA_RANGE from @cpu: convert, or refuse with a reason.
 * Returns run->hypercall.ret for the guest: 0, EINVAL or EAGAIN.
 * Never stops the VM.
 */
int64_t kvm_gmem_map_gpa_range(CPUState *cpu, uint64_t gpa, uint64_t npages,
                               uint64_t attrs);

/*
 * KVM_EXIT_MEMORY_FAULT: the guest touched @gpa..+@size with the other
 * attribute. Returns 0 when the guest may run again: converted, or
 * refused for a reason that may pass, so that it faults again (for at
 * most guest-memfd-fault-timeout ms). Returns < 0 when the access cannot
 * be made to work, which stops the VM (there is no way to answer the
 * guest), with an error naming the reason.
 */
int kvm_gmem_memory_fault(uint64_t gpa, uint64_t size, bool to_private);

/*
 * In-place guest_memfd (memory-backend-guest-memfd): create a guest_memfd
 * of @size bytes that QEMU can mmap and that starts shared
 * (GUEST_MEMFD_FLAG_MMAP | INIT_SHARED), or fail saying what the kernel or
 * the VM type lacks. Returns the fd or -1.
 */
int kvm_gmem_create_in_place(uint64_t size, Error **errp);

/* Whether this VM's guest_memfd can be mmap'ed and start shared. */
bool kvm_gmem_in_place_possible(KVMState *s);

/*
 * Make @rb, which maps guest_memfd @fd at offset 0, use it as its
 * guest_memfd too, so its memslots are KVM_MEM_GUEST_MEMFD on the same
 * pages. detach undoes it before the block goes away (the backend owns
 * the fd).
 */
void kvm_gmem_attach_in_place(RAMBlock *rb, int fd);
void kvm_gmem_detach_in_place(RAMBlock *rb);

/*
 * Host I/O on guest RAM (address_space_map() and its users: device DMA)
 * wants to map @size bytes at @offset of @rb until the matching unmap.
 * Returns how many it may map: host I/O reaches only shared memory, so
 * the mapping stops short of the first private page, or of a page being
 * converted; 0 if the first is one. What it may map is leased, until
 * kvm_gmem_lease_drop() at the unmap, so it does not go private under
 * the mapping. Never waits. Blocks without a private side: all of it.
 */
uint64_t kvm_gmem_lease_take(RAMBlock *rb, uint64_t offset, uint64_t size);
void kvm_gmem_lease_drop(RAMBlock *rb, uint64_t offset);

/*
 * QEMU's own access to guest RAM of @len bytes at @offset of @rb, a block
 * with a private side (rb->attributes), whose host mapping there is
 * @host: the monitor's x/xp, pmemsave, dump-guest-memory, the ld/st
 * family, device emulation that reads or writes without a mapping
 * (virtio's rings among them: address_space_cache_init() gives such
 * blocks no host pointer). The shared pages are copied, each run under a
 * lease for the copy; a private page, or one being converted, is never
 * touched: a read gets zeros, a write is dropped. Touching the shared
 * side of a private page would allocate it again, or raise SIGBUS if it
 * is a huge page the pool cannot give back. Never waits; called inside
 * the caller's RCU read section.
 */
void kvm_gmem_host_read(RAMBlock *rb, uint64_t offset, void *buf,
                        const void *host, uint64_t len);
void kvm_gmem_host_write(RAMBlock *rb, uint64_t offset, void *host,
                         const void *buf, uint64_t len);

/*
 * The calls physmem.c makes in place of upstream's memcpy() to and from
 * guest RAM: blocks without a private side pay one pointer test.
 */
static inline void kvm_gmem_ram_read(RAMBlock *rb, ram_addr_t offset,
                                     void *buf, const void *host, size_t len)
{
    if (unlikely(rb->attributes)) {
        kvm_gmem_host_read(rb, offset, buf, host, len);
    } else {
        memcpy(buf, host, len);
    }
}

static inline void kvm_gmem_ram_write(RAMBlock *rb, ram_addr_t offset,
                                      void *host, const void *buf, size_t len)
{
    if (unlikely(rb->attributes)) {
        kvm_gmem_host_write(rb, offset, host, buf, len);
    } else {
        memmove(host, buf, len);
    }
}

/*
 * The ld/st family (memory_ldst.c.inc) loads from, and stores to, the
 * pointer these return for @offset of @rb: the host's, or for a block
 * with a private side @bounce, which kvm_gmem_ram_load_ptr() fills and
 * kvm_gmem_ram_stored() writes back. @bounce must outlive the access.
 */
static inline void *kvm_gmem_ram_load_ptr(RAMBlock *rb, ram_addr_t offset,
                                          size_t len, uint64_t *bounce)
{
    void *host = qemu_map_ram_ptr(rb, offset);

    if (unlikely(rb->attributes)) {
        kvm_gmem_host_read(rb, offset, bounce, host, len);
        return bounce;
    }
    return host;
}

static inline void *kvm_gmem_ram_store_ptr(RAMBlock *rb, ram_addr_t offset,
                                           uint64_t *bounce)
{
    return unlikely(rb->attributes) ? bounce : qemu_map_ram_ptr(rb, offset);
}

static inline void kvm_gmem_ram_stored(RAMBlock *rb, ram_addr_t offset,
                                       const void *ptr, size_t len)
{
    if (unlikely(rb->attributes)) {
        kvm_gmem_host_write(rb, offset, qemu_map_ram_ptr(rb, offset), ptr,
                            len);
    }
}

/*
 * dump-guest-memory writes @len bytes from @host: @host itself, or where
 * it is guest RAM with a private side a copy in which private pages read
 * as zeros, valid until the next call (one dump runs at a time).
 */
void *kvm_gmem_dump_view(void *host, size_t len);

/*
 * A RamDiscardListener (VFIO) of a RAMBlock with a private side is added
 * to or removed from its RamBlockAttributes (system/ram-block-attributes.c,
 * with its replay or its final discard): conversions walk those listeners
 * and tell them of changes under the conversion manager's lock, so the
 * change holds it too. Called with the BQL held (the lock order allows
 * it), never from a listener's callback.
 */
void kvm_gmem_listener_change_begin(void);
void kvm_gmem_listener_change_end(void);

/*
 * Register @blocker, naming @owner, against migration of a VM whose RAM
 * has guest_memfd memslots; returns migrate_add_blocker()'s result.
 * Undo with migrate_del_blocker(@blocker).
 */
int kvm_gmem_block_migration(Error **blocker, const char *owner,
                             Error **errp);

/* Whether upstream's conversion path was selected (-accel kvm,...). */
bool kvm_gmem_legacy(void);

/* Adds the layer's properties to the KVM accelerator class. */
void kvm_gmem_accel_class_init(ObjectClass *oc);

#endif
