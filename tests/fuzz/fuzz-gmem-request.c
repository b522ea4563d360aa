/*
 * libFuzzer harness: KVM_HC_MAP_GPA_RANGE arguments as a guest sends them
 * (gpa, npages, attrs: any 64-bit values) through the manager's decoder.
 *
 * No KVM here: decoding is the part of the guest request path that needs
 * none, and the part no rig test can drive with arbitrary values (only
 * SEV-SNP and TDX guests raise the exit for every request). The oracle
 * checks properties, in 128-bit arithmetic, rather than re-deriving the
 * answer: an accepted request is exactly the guest's range, aligned, not
 * wrapping (a range may end at 2^64, but its size must fit in 64 bits),
 * with no reserved bit and a hint it fits; a refusal names a
 * rule the request really breaks; the guest's answer is 0, EINVAL or
 * EAGAIN.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "gmem-request.h"

#define HC_PAGE     4096ULL
#define ENCRYPTED   (1ULL << 4)

static uint64_t hint_size(uint64_t attrs)
{
    switch (attrs & 0xf) {
    case 0:
        return 4096;
    case 1:
        return 2ULL << 20;
    case 2:
        return 1ULL << 30;
    default:
        return 0;       /* reserved */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t arg[3] = { 0 };
    KvmGmemRange range = { 0 };
    KvmGmemReject r;
    unsigned __int128 bytes, end;
    bool reserved;
    int64_t answer;

    memcpy(arg, data, MIN(size, sizeof(arg)));
    r = kvm_gmem_decode_map_gpa_range(arg[0], arg[1], arg[2], &range);
    bytes = (unsigned __int128)arg[1] * HC_PAGE;
    end = (unsigned __int128)arg[0] + bytes;
    reserved = (arg[2] & ~(0xfULL | ENCRYPTED)) || !hint_size(arg[2]);

    answer = kvm_gmem_reject_to_guest(r);
    assert(answer == 0 || answer == 22 || answer == 11);
    assert((answer == 0) == (r == KVM_GMEM_OK));
    assert(strcmp(kvm_gmem_reject_name(r), "?"));

    switch (r) {
    case KVM_GMEM_OK:
        assert(range.gpa == arg[0] && range.size == bytes);
        assert(range.size && end <= ((unsigned __int128)1 << 64));
        assert(!(range.gpa % HC_PAGE));
        assert(!reserved);
        assert(!(range.gpa % hint_size(arg[2])) &&
               !(range.size % hint_size(arg[2])));
        assert(range.to_private == !!(arg[2] & ENCRYPTED));
        break;
    case KVM_GMEM_REJECT_EMPTY:
        assert(arg[1] == 0);
        break;
    case KVM_GMEM_REJECT_UNALIGNED:
        assert(arg[0] % HC_PAGE);
        break;
    case KVM_GMEM_REJECT_OVERFLOW:
        /* Past 2^64, or a size of 2^64 bytes, which no uint64_t holds. */
        assert(end > ((unsigned __int128)1 << 64) ||
               bytes >= ((unsigned __int128)1 << 64));
        break;
    case KVM_GMEM_REJECT_RESERVED:
        assert(reserved);
        break;
    case KVM_GMEM_REJECT_HINT:
        assert(!reserved && hint_size(arg[2]) > HC_PAGE &&
               ((arg[0] % hint_size(arg[2])) || (bytes % hint_size(arg[2]))));
        break;
    default:
        abort();        /* decoding never looks at the memory map */
    }
    return 0;
}
