/*
 * KVM_X86_SW_PROTECTED_VM confidential guest support
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef TARGET_I386_SW_PROTECTED_VM_H
#define TARGET_I386_SW_PROTECTED_VM_H

#include "hw/boards.h"
#include "qom/object.h"

#define TYPE_SW_PROTECTED_VM "sw-protected-vm"

/*
 * Whether firmware regions (pc.bios and its ISA alias) must live in
 * guest_memfd. SEV and TDX measure and encrypt firmware, so it must be
 * private-capable. A sw-protected VM has no launch measurement and its
 * memory starts shared: the firmware stays ordinary RAM, which keeps the
 * ISA BIOS alias that SeaBIOS needs (one guest_memfd range may not back two
 * memslots).
 */
static inline bool x86_firmware_in_guest_memfd(MachineState *ms)
{
    return machine_require_guest_memfd(ms) &&
           !object_dynamic_cast(OBJECT(ms->cgs), TYPE_SW_PROTECTED_VM);
}

#endif
