/*
 * Test guest: the edu driver (edu.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "edu.h"
#include "hypercall.h"

#define EDU_VENDOR      0x1234
#define EDU_DEVICE      0x11e8
#define EDU_ID          0x00            /* 0x010000ed: version 1.0 */
#define EDU_DMA_SRC     0x80
#define EDU_DMA_DST     0x88
#define EDU_DMA_COUNT   0x90
#define EDU_DMA_CMD     0x98
#define EDU_DMA_RUN     0x1
#define EDU_DMA_TO_RAM  0x2
#define EDU_BUF_ADDR    0x40000         /* the buffer, as the engine sees it */

static uint32_t edu_read32(struct edu *edu, unsigned off)
{
    /* Volatile: a device register, read every time. */
    return *(volatile uint32_t *)(edu->mmio + off);
}

bool edu_init(struct edu *edu)
{
    uint32_t cmd;

    edu->devfn = pci_find(EDU_VENDOR, EDU_DEVICE);
    if (edu->devfn < 0) {
        return false;
    }
    edu->mmio = pci_read32(edu->devfn, PCI_BAR0) & ~0xfull;
    cmd = pci_read32(edu->devfn, PCI_COMMAND);
    pci_write32(edu->devfn, PCI_COMMAND,
                cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    return edu->mmio && (edu_read32(edu, EDU_ID) & 0xff) == 0xed;
}

bool edu_dma(struct edu *edu, uint64_t gpa, uint64_t off, uint64_t len,
             bool to_ram)
{
    uint64_t deadline;

    mb();
    write_word(edu->mmio + EDU_DMA_SRC, to_ram ? EDU_BUF_ADDR + off : gpa);
    write_word(edu->mmio + EDU_DMA_DST, to_ram ? gpa : EDU_BUF_ADDR + off);
    write_word(edu->mmio + EDU_DMA_COUNT, len);
    write_word(edu->mmio + EDU_DMA_CMD,
               EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0));
    /* 100 ms of the device's clock, and then some: TSC ticks are cheap. */
    deadline = rdtsc() + 200000000000ull;
    while (edu_read32(edu, EDU_DMA_CMD) & EDU_DMA_RUN) {
        if (rdtsc() > deadline) {
            return false;
        }
        asm volatile("pause");
    }
    mb();
    return true;
}
