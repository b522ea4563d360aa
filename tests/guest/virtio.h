/*
 * Test guest: legacy virtio over PCI port I/O, polled.
 *
 * Just enough of a virtio driver for tests that need a device to write
 * guest memory (virtio-blk) or to take memory back (virtio-balloon):
 * transitional devices with disable-legacy=off, one bus, no interrupts.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "guest.h"

#define VIRTIO_ID_BLK       0x1001      /* transitional PCI device IDs */
#define VIRTIO_ID_BALLOON   0x1002

#define VIRTQ_MAX_SIZE      256

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq {
    uint16_t index;             /* queue number on the device */
    uint16_t size;
    uint16_t free_head;         /* descriptors chained by next */
    uint16_t nr_free;
    uint16_t avail_idx;         /* next avail ring slot we fill */
    uint16_t last_used;         /* next used ring slot we read */
    /* Volatile: the device reads and writes the rings behind our back. */
    volatile struct virtq_desc *desc;
    volatile uint16_t *avail;   /* flags, idx, ring[size] */
    volatile uint32_t *used;    /* flags|idx, then (id, len) pairs */
};

struct virtio_dev {
    uint16_t io;                /* base of the legacy registers (BAR0) */
    uint8_t bus_dev_fn;
};

/* One buffer of a request: device-readable unless @device_writes. */
struct virtq_buf {
    uint64_t gpa;
    uint32_t len;
    bool device_writes;
};

/*
 * Find the first device with PCI @device_id on bus 0, reset it and take
 * it to DRIVER with no features. Returns false if there is none.
 */
bool virtio_probe(struct virtio_dev *dev, uint16_t device_id);
/* Set up queue @index in @q (its memory is the driver's). */
bool virtio_queue_init(struct virtio_dev *dev, struct virtq *q, int index);
/* The same, in the 16 KiB at @memory (4 KiB aligned). */
bool virtio_queue_init_at(struct virtio_dev *dev, struct virtq *q, int index,
                          void *memory);
void virtio_driver_ok(struct virtio_dev *dev);

/* Device config space (after the legacy header, no MSI-X). */
uint32_t virtio_config_read32(struct virtio_dev *dev, int offset);
void virtio_config_write32(struct virtio_dev *dev, int offset, uint32_t v);

/*
 * Queue a request of @n buffers and notify the device. Returns the head
 * descriptor (the request's id in virtq_poll()), or -1 if the queue is
 * full.
 */
int virtq_submit(struct virtio_dev *dev, struct virtq *q,
                 const struct virtq_buf *bufs, int n);
/*
 * If the device finished a request, free its descriptors, store its id
 * and written length, and return true.
 */
bool virtq_poll(struct virtq *q, int *id, uint32_t *len);
/* Wait for request @id; false if it took more than @spins polls. */
bool virtq_wait(struct virtq *q, int id, uint64_t spins);

/*
 * virtio-blk. blk_open(): the first legacy device, reset, and its request
 * queue, ready to take requests: TEST_PASS, or why not; blk_open_at():
 * the same with the queue in @memory (virtio_queue_init_at()).
 * blk_read_start(): start a 4 KiB read of sector 0 into @buf, the header
 * and the status byte at @meta; returns the request id. blk_status():
 * that status byte.
 */
enum test_result blk_open(struct virtio_dev *dev, struct virtq *q);
enum test_result blk_open_at(struct virtio_dev *dev, struct virtq *q,
                             void *memory);
int blk_read_start(struct virtio_dev *dev, struct virtq *q, uint64_t buf,
                   uint64_t meta);
uint8_t blk_status(uint64_t meta);

#endif
