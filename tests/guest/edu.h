/*
 * Test guest: a driver for QEMU's edu device (docs/specs/edu.rst), a PCI
 * function with a DMA engine and a 4 KiB buffer, for device-assignment
 * tests: the rig's L1 binds one to vfio-pci and our QEMU assigns it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef GUEST_EDU_H
#define GUEST_EDU_H

#include "guest.h"

#define EDU_BUF_SIZE    4096            /* the device's DMA buffer */

struct edu {
    uint64_t mmio;                      /* BAR 0 */
    int devfn;
};

/* Find the device and enable its BAR and bus mastering; false if none. */
bool edu_init(struct edu *edu);

/*
 * One DMA of @len bytes between guest physical @gpa and offset @off of
 * the device's buffer: to_ram copies the buffer to RAM, else RAM to the
 * buffer. Waits for the engine (it starts 100 ms after the command).
 * Returns false if it did not finish in time.
 */
bool edu_dma(struct edu *edu, uint64_t gpa, uint64_t off, uint64_t len,
             bool to_ram);

#endif
