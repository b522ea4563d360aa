/*
 * Test guest: legacy virtio over PCI port I/O, polled.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "virtio.h"

#define PCI_VENDOR_REDHAT   0x1af4

/* Legacy virtio PCI registers, offsets from BAR0 (virtio 0.9.5). */
#define VIRTIO_PCI_GUEST_FEATURES   4
#define VIRTIO_PCI_QUEUE_PFN        8
#define VIRTIO_PCI_QUEUE_NUM        12
#define VIRTIO_PCI_QUEUE_SEL        14
#define VIRTIO_PCI_QUEUE_NOTIFY     16
#define VIRTIO_PCI_STATUS           18
#define VIRTIO_PCI_CONFIG           20      /* MSI-X stays off */

#define VIRTIO_STATUS_ACKNOWLEDGE   1
#define VIRTIO_STATUS_DRIVER        2
#define VIRTIO_STATUS_DRIVER_OK     4

#define VIRTQ_DESC_F_NEXT           1
#define VIRTQ_DESC_F_WRITE          2

#define VIRTQ_ALIGN                 4096
#define MAX_QUEUES                  4

/* Room for MAX_QUEUES queues of VIRTQ_MAX_SIZE entries, legacy layout. */
static uint8_t queue_memory[MAX_QUEUES][4 * 4096]
    __attribute__((aligned(4096)));
static int queues_used;

bool virtio_probe(struct virtio_dev *dev, uint16_t device_id)
{
    int devfn = pci_find(PCI_VENDOR_REDHAT, device_id);
    uint32_t bar;

    if (devfn < 0) {
        return false;
    }
    bar = pci_read32(devfn, PCI_BAR0);
    if (!(bar & 1)) {
        return false;           /* not an I/O BAR: legacy is disabled */
    }
    dev->bus_dev_fn = devfn;
    dev->io = bar & ~3u;
    pci_write32(devfn, PCI_COMMAND, pci_read32(devfn, PCI_COMMAND) |
                PCI_COMMAND_IO | PCI_COMMAND_MASTER);
    outb(dev->io + VIRTIO_PCI_STATUS, 0);   /* reset */
    outb(dev->io + VIRTIO_PCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    outb(dev->io + VIRTIO_PCI_STATUS,
         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    outl(dev->io + VIRTIO_PCI_GUEST_FEATURES, 0);
    return true;
}

bool virtio_queue_init(struct virtio_dev *dev, struct virtq *q, int index)
{
    if (queues_used == MAX_QUEUES) {
        return false;
    }
    return virtio_queue_init_at(dev, q, index, queue_memory[queues_used++]);
}

bool virtio_queue_init_at(struct virtio_dev *dev, struct virtq *q, int index,
                          void *memory)
{
    uint8_t *mem = memory;
    uint16_t size;

    outw(dev->io + VIRTIO_PCI_QUEUE_SEL, index);
    size = inw(dev->io + VIRTIO_PCI_QUEUE_NUM);
    if (!size || size > VIRTQ_MAX_SIZE) {
        return false;
    }
    memset(mem, 0, sizeof(queue_memory[0]));
    *q = (struct virtq) {
        .index = index,
        .size = size,
        .nr_free = size,
        .desc = (void *)mem,
        .avail = (void *)(mem + 16 * size),
        .used = (void *)(mem + ALIGN_UP(16 * size + 6 + 2 * size,
                                        VIRTQ_ALIGN)),
    };
    for (int i = 0; i < size; i++) {
        q->desc[i].next = i + 1;
    }
    outl(dev->io + VIRTIO_PCI_QUEUE_PFN, (uint64_t)mem >> 12);
    return true;
}

void virtio_driver_ok(struct virtio_dev *dev)
{
    outb(dev->io + VIRTIO_PCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
         VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
}

uint32_t virtio_config_read32(struct virtio_dev *dev, int offset)
{
    return inl(dev->io + VIRTIO_PCI_CONFIG + offset);
}

void virtio_config_write32(struct virtio_dev *dev, int offset, uint32_t v)
{
    outl(dev->io + VIRTIO_PCI_CONFIG + offset, v);
}

int virtq_submit(struct virtio_dev *dev, struct virtq *q,
                 const struct virtq_buf *bufs, int n)
{
    uint16_t head = q->free_head, d = head;

    if (n < 1 || n > q->nr_free) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        q->desc[d].addr = bufs[i].gpa;
        q->desc[d].len = bufs[i].len;
        q->desc[d].flags = (bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                           (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
        if (i + 1 < n) {
            d = q->desc[d].next;
        }
    }
    q->free_head = q->desc[d].next;
    q->nr_free -= n;
    q->avail[2 + q->avail_idx % q->size] = head;
    /* The device must see the ring entry before the new index. */
    barrier();
    q->avail[1] = ++q->avail_idx;
    mb();
    outw(dev->io + VIRTIO_PCI_QUEUE_NOTIFY, q->index);
    return head;
}

bool virtq_poll(struct virtq *q, int *id, uint32_t *len)
{
    uint16_t used_idx = q->used[0] >> 16;
    uint16_t d, n = 1;

    if (used_idx == q->last_used) {
        return false;
    }
    barrier();
    *id = q->used[1 + 2 * (q->last_used % q->size)];
    *len = q->used[2 + 2 * (q->last_used % q->size)];
    q->last_used++;
    /* Give the chain back to the free list. */
    for (d = *id; q->desc[d].flags & VIRTQ_DESC_F_NEXT; d = q->desc[d].next) {
        n++;
    }
    q->desc[d].next = q->free_head;
    q->free_head = *id;
    q->nr_free += n;
    return true;
}

bool virtq_wait(struct virtq *q, int id, uint64_t spins)
{
    int done;
    uint32_t len;

    while (spins--) {
        if (virtq_poll(q, &done, &len) && done == id) {
            return true;
        }
        asm volatile("pause");
    }
    return false;
}

/* virtio-blk request header. */
#define VIRTIO_BLK_T_IN     0
struct virtio_blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

#define BLK_STATUS_OFFSET   64

uint8_t blk_status(uint64_t meta)
{
    /* Volatile: the device writes it. */
    return *(volatile uint8_t *)(meta + BLK_STATUS_OFFSET);
}

int blk_read_start(struct virtio_dev *dev, struct virtq *q, uint64_t buf,
                   uint64_t meta)
{
    struct virtio_blk_req_hdr *hdr = (void *)meta;
    struct virtq_buf bufs[3] = {
        { meta, sizeof(*hdr), false },
        { buf, 4096, true },
        { meta + BLK_STATUS_OFFSET, 1, true },
    };

    hdr->type = VIRTIO_BLK_T_IN;
    hdr->reserved = 0;
    hdr->sector = 0;
    *(uint8_t *)(meta + BLK_STATUS_OFFSET) = 0xff;
    /* The device must see the request before the kick. */
    barrier();
    return virtq_submit(dev, q, bufs, 3);
}

enum test_result blk_open_at(struct virtio_dev *dev, struct virtq *q,
                             void *memory)
{
    if (!virtio_probe(dev, VIRTIO_ID_BLK)) {
        return test_skip("no legacy virtio-blk device");
    }
    if (!(memory ? virtio_queue_init_at(dev, q, 0, memory) :
          virtio_queue_init(dev, q, 0))) {
        return test_fail("cannot set up the request queue");
    }
    virtio_driver_ok(dev);
    return TEST_PASS;
}

enum test_result blk_open(struct virtio_dev *dev, struct virtq *q)
{
    return blk_open_at(dev, q, NULL);
}
