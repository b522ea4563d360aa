/*
 * KVM guest_memfd layer: what KVM zaps when a memslot goes away
 * (-accel kvm,memslot-zap=; accel/kvm/gmem/memslot-zap.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_MEMSLOT_ZAP_H
#define SYSTEM_KVM_MEMSLOT_ZAP_H

#include "qapi/qapi-types-guest-memfd.h"
#include "system/kvm.h"

/*
 * The VM of @vm_type was just created: apply the memslot-zap policy, or
 * decide it once the machine is complete (auto). Returns false with
 * @errp set when memslot-zap=targeted cannot be had.
 */
bool kvm_memslot_zap_init(KVMState *s, int vm_type, Error **errp);

/* The policy and the outcome; NULL before kvm_memslot_zap_init(). */
KvmMemslotZapInfo *kvm_memslot_zap_query(void);

#endif
