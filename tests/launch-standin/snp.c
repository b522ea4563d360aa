/*
 * SEV-SNP as Linux 7.2 and the SNP firmware would answer QEMU: /dev/sev's
 * SEV_PLATFORM_STATUS, and KVM_MEMORY_ENCRYPT_OP's KVM_SEV_INIT2,
 * SNP_LAUNCH_START, SNP_LAUNCH_UPDATE and SNP_LAUNCH_FINISH with the
 * checks of arch/x86/kvm/svm/sev.c and virt/kvm/guest_memfd.c. The
 * launch digest is computed as the firmware does (SNP firmware ABI,
 * PAGE_INFO): from the bytes at each source address at the moment of the
 * call, and from the VMSA Linux builds of each real vCPU's registers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "standin.h"

#define SVM_SEV_FEAT_SNP_ACTIVE     (1ULL << 0)
#define SVM_SEV_FEAT_DEBUG_SWAP     (1ULL << 5)
#define SNP_POLICY_MASK_RSVD_MBO    (1ULL << 17)
/* SNP_POLICY_MASK_BASE of include/linux/psp-sev.h */
#define SNP_POLICY_MASK_BASE        0x3bffffULL
#define GHCB_VERSION_MAX            2
#define SNP_PAGE_TYPE_VMSA          2
#define INITIAL_VMSA_GPA            0xFFFFFFFFF000ULL

static struct {
    bool initialized;           /* KVM_SEV_INIT2 done (!sev->need_init) */
    bool context;               /* SNP_LAUNCH_START done (snp_context) */
    bool finished;              /* the vCPUs' state is protected */
    uint64_t vmsa_features;     /* sev->vmsa_features */
    uint8_t ld[STANDIN_DIGEST_SIZE];
    unsigned pages;
} snp;

/* sev_hardware_setup(): a host with DebugSwap, as Zen 3 and later. */
uint64_t snp_supported_vmsa_features(void)
{
    return SVM_SEV_FEAT_DEBUG_SWAP;
}

uint64_t snp_supported_policy_bits(void)
{
    return SNP_POLICY_MASK_BASE;
}

long snp_sev_device_ioctl(unsigned long req, void *arg)
{
    struct sev_issue_cmd *cmd = arg;
    struct sev_user_data_status status = {
        .api_major = 1, .api_minor = 55, .build = 21,
        .state = 1,             /* SEV_STATE_INIT */
        .flags = SEV_STATUS_FLAGS_CONFIG_ES,
    };

    if (req != SEV_ISSUE_CMD) {
        return -ENOTTY;
    }
    if (cmd->cmd != SEV_PLATFORM_STATUS) {
        return standin_refuse("SEV_ISSUE_CMD", -EINVAL,
                              "the stand-in answers SEV_PLATFORM_STATUS only");
    }
    cmd->error = 0;
    return standin_write_user(cmd->data, &status, sizeof(status));
}

/*
 * The firmware's PAGE_INFO (SNP ABI, 8.17.2): the new digest is SHA-384
 * over the old one, the page's SHA-384 for normal and VMSA pages (zeros
 * otherwise), length 0x70, type, IMI, three VMPL permissions and the GPA.
 */
static void snp_measure_page(uint8_t type, uint64_t gpa, const uint8_t *page)
{
    uint8_t info[0x70] = { 0 };
    GChecksum *h;
    gsize len = STANDIN_DIGEST_SIZE;

    memcpy(info, snp.ld, STANDIN_DIGEST_SIZE);
    if (page) {
        h = g_checksum_new(G_CHECKSUM_SHA384);
        g_checksum_update(h, page, STANDIN_PAGE_SIZE);
        g_checksum_get_digest(h, info + 48, &len);
        g_checksum_free(h);
    }
    info[96] = 0x70;
    info[98] = type;
    memcpy(info + 104, &gpa, 8);
    h = g_checksum_new(G_CHECKSUM_SHA384);
    g_checksum_update(h, info, sizeof(info));
    len = STANDIN_DIGEST_SIZE;
    g_checksum_get_digest(h, snp.ld, &len);
    g_checksum_free(h);
    snp.pages++;
}

static int snp_init2(struct kvm_sev_cmd *cmd)
{
    struct kvm_sev_init init;
    uint64_t valid = snp_supported_vmsa_features();
    uint64_t fw_error = 0;
    int ret;

    if (snp.initialized) {
        /* sev_mem_enc_ioctl(): only SNP commands once it is SNP */
        return standin_refuse("KVM_SEV_INIT2", -EPERM,
                              "sev_mem_enc_ioctl(): an SNP VM accepts only "
                              "SNP commands after KVM_SEV_INIT2");
    }
    if (standin_read_user(cmd->data, &init, sizeof(init))) {
        return -EFAULT;
    }
    /* __sev_guest_init() */
    if (standin.nr_vcpus) {
        return standin_refuse("KVM_SEV_INIT2", -EINVAL, "__sev_guest_init(): "
                              "vCPUs were created before it");
    }
    if (init.flags || (init.vmsa_features & ~valid) ||
        init.ghcb_version > GHCB_VERSION_MAX ||
        (init.ghcb_version && init.ghcb_version < 2)) {
        return standin_refuse("KVM_SEV_INIT2", -EINVAL, "__sev_guest_init(): "
                              "flags, VMSA features or GHCB version");
    }
    /*
     * What fails past the checks: sev_asid_new() (EBUSY, no ASID left),
     * sev_platform_init() (EIO and the firmware's code in argp->error);
     * __sev_guest_init() then leaves the VM uninitialised.
     */
    ret = standin_injected("sev-init2", &fw_error);
    if (ret) {
        cmd->error = fw_error;
        return ret;
    }
    snp.initialized = true;
    snp.vmsa_features = init.vmsa_features | SVM_SEV_FEAT_SNP_ACTIVE;
    standin_report("{\"event\": \"sev-init2\", \"vmsa-features\": %" PRIu64
                   ", \"ghcb-version\": %u}", snp.vmsa_features,
                   init.ghcb_version ? init.ghcb_version : 2);
    return 0;
}

static int snp_launch_start(struct kvm_sev_cmd *cmd)
{
    struct kvm_sev_snp_launch_start start;
    uint64_t fw_error = 0;
    int ret;

    if (!snp.initialized) {
        return -ENOTTY;         /* !sev_snp_guest() */
    }
    if (standin_read_user(cmd->data, &start, sizeof(start))) {
        return -EFAULT;
    }
    if (snp.context || start.flags ||
        (start.policy & ~snp_supported_policy_bits()) ||
        !(start.policy & SNP_POLICY_MASK_RSVD_MBO)) {
        return standin_refuse("SNP_LAUNCH_START", -EINVAL,
                              "snp_launch_start(): one context, no flags, "
                              "supported policy bits, bit 17 set");
    }
    if (cmd->sev_fd != (uint32_t)standin.sev_fd) {
        /* __sev_issue_cmd() -> sev_issue_cmd_external_user() */
        return -EBADF;
    }
    /*
     * snp_context_create() (ENOTTY), SEV_CMD_SNP_LAUNCH_START and
     * snp_bind_asid() (EIO and the firmware's code): the context is
     * decommissioned, so a later SNP_LAUNCH_START may try again.
     */
    ret = standin_injected("snp-launch-start", &fw_error);
    if (ret) {
        cmd->error = fw_error;
        return ret;
    }
    snp.context = true;
    standin_report("{\"event\": \"snp-launch-start\", \"policy\": %" PRIu64
                   "}", (uint64_t)start.policy);
    return 0;
}

static bool snp_page_type_valid(uint8_t type)
{
    return type == KVM_SEV_SNP_PAGE_TYPE_NORMAL ||
           type == KVM_SEV_SNP_PAGE_TYPE_ZERO ||
           type == KVM_SEV_SNP_PAGE_TYPE_UNMEASURED ||
           type == KVM_SEV_SNP_PAGE_TYPE_SECRETS ||
           type == KVM_SEV_SNP_PAGE_TYPE_CPUID;
}

/*
 * One page of kvm_gmem_populate() with sev_gmem_post_populate(): 0, or
 * the error the page fails with.
 */
static int snp_populate_page(uint64_t gfn, uint64_t src, uint8_t type,
                             uint8_t *page)
{
    uint64_t slot_end;

    if (src && standin_read_user(src, page, STANDIN_PAGE_SIZE)) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EFAULT,
                              "kvm_gmem_populate(): get_user_pages_fast() "
                              "of the source");
    }
    if (standin_gmem_page_check(gfn, &slot_end)) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EINVAL,
                              "__kvm_gmem_populate(): the GFN is not "
                              "private in KVM, or its memslot has no "
                              "guest_memfd");
    }
    if (!standin_mark_populated(gfn)) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EEXIST,
                              "sev_gmem_post_populate(): the RMP entry is "
                              "already assigned (populated before)");
    }
    return 0;
}

/* What was populated from where, and the source's bytes' SHA-384. */
static void report_page(uint64_t gfn, uint8_t type, uint64_t src,
                        const uint8_t *page)
{
    g_autofree char *sum = src ? g_compute_checksum_for_data(
        G_CHECKSUM_SHA384, page, STANDIN_PAGE_SIZE) : g_strdup("");

    standin_report("{\"event\": \"snp-page\", \"gpa\": %" PRIu64
                   ", \"type\": %u, \"uaddr\": %" PRIu64 ", \"sha384\": "
                   "\"%s\"}", (uint64_t)(gfn * STANDIN_PAGE_SIZE), type, src, sum);
}

static int snp_launch_update(struct kvm_sev_cmd *cmd)
{
    struct kvm_sev_snp_launch_update u;
    g_autofree uint8_t *page = g_malloc(STANDIN_PAGE_SIZE);
    uint64_t src, count = 0, slot_end, fw_error = 0;
    int ret = 0;

    if (!snp.initialized || !snp.context) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EINVAL,
                              "snp_launch_update(): no SNP context "
                              "(SNP_LAUNCH_START)");
    }
    if (standin_read_user(cmd->data, &u, sizeof(u))) {
        return -EFAULT;
    }
    if (!u.len || u.len % STANDIN_PAGE_SIZE || u.flags ||
        !snp_page_type_valid(u.type)) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EINVAL,
                              "snp_launch_update(): length, flags or page "
                              "type");
    }
    src = u.type == KVM_SEV_SNP_PAGE_TYPE_ZERO ? 0 : u.uaddr;
    if (src % STANDIN_PAGE_SIZE) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EINVAL,
                              "snp_launch_update(): the source is not "
                              "page aligned");
    }
    if (standin_gmem_page_check(u.gfn_start, &slot_end) &&
        slot_end == u.gfn_start) {
        return standin_refuse("SNP_LAUNCH_UPDATE", -EINVAL,
                              "snp_launch_update(): kvm_slot_has_gmem() of "
                              "the first GFN");
    }
    ret = standin_injected("snp-launch-update", &fw_error);
    if (ret) {
        cmd->error = fw_error;
        return ret;
    }
    if (snp.finished) {
        /* The firmware: SNP_LAUNCH_UPDATE needs the guest in GSTATE_LAUNCH. */
        cmd->error = SEV_RET_INVALID_GUEST_STATE;
        return standin_refuse("SNP_LAUNCH_UPDATE", -EIO,
                              "firmware: the guest was launched "
                              "(SNP_LAUNCH_FINISH)");
    }
    /* The sources as they are once any discard in flight is done. */
    standin_discards_settle();
    /* kvm_gmem_populate() stops at the end of the memslot. */
    for (; count < u.len / STANDIN_PAGE_SIZE &&
           u.gfn_start + count < slot_end; count++) {
        uint64_t s = src ? src + count * STANDIN_PAGE_SIZE : 0;

        ret = snp_populate_page(u.gfn_start + count, s, u.type, page);
        if (ret) {
            break;
        }
        snp_measure_page(u.type, (u.gfn_start + count) * STANDIN_PAGE_SIZE,
                         u.type == KVM_SEV_SNP_PAGE_TYPE_NORMAL ? page : NULL);
        report_page(u.gfn_start + count, u.type, s, page);
    }
    /* kvm_gmem_populate(): an error on the first page is the error ... */
    if (ret && !count) {
        cmd->error = 0;
        return -EIO;            /* snp_launch_update(): count < 0 */
    }
    /* ... else the progress, written back for QEMU to go on. */
    u.gfn_start += count;
    u.len -= count * STANDIN_PAGE_SIZE;
    if (u.type != KVM_SEV_SNP_PAGE_TYPE_ZERO) {
        u.uaddr += count * STANDIN_PAGE_SIZE;
    }
    return standin_write_user(cmd->data, &u, sizeof(u));
}

static int snp_launch_finish(struct kvm_sev_cmd *cmd)
{
    struct kvm_sev_snp_launch_finish f;
    g_autofree uint8_t *page = g_malloc(STANDIN_PAGE_SIZE);
    g_autofree uint8_t *id_block = NULL;
    g_autofree char *host_data = NULL, *digest = NULL;
    uint64_t fw_error = 0;
    int ret;

    if (!snp.initialized) {
        return -ENOTTY;
    }
    if (!snp.context) {
        return -EINVAL;
    }
    if (standin_read_user(cmd->data, &f, sizeof(f))) {
        return -EFAULT;
    }
    if (f.flags) {
        return standin_refuse("SNP_LAUNCH_FINISH", -EINVAL,
                              "snp_launch_finish(): flags");
    }
    if (snp.finished) {
        return standin_refuse("SNP_LAUNCH_FINISH", -EINVAL,
                              "sev_es_sync_vmsa(): the vCPUs' state is "
                              "already protected");
    }
    ret = standin_injected("snp-launch-finish", &fw_error);
    if (ret) {
        cmd->error = fw_error;
        return ret;
    }
    /* snp_launch_update_vmsa(): every vCPU, in kvm_for_each_vcpu() order. */
    for (unsigned i = 0; i < standin.nr_vcpus; i++) {
        g_autofree char *hex = NULL;

        ret = snp_build_vmsa(standin.vcpus[i].fd, snp.vmsa_features, page);
        if (ret) {
            return ret;
        }
        snp_measure_page(SNP_PAGE_TYPE_VMSA, INITIAL_VMSA_GPA, page);
        hex = standin_hex(page, 0x6a0);
        standin_report("{\"event\": \"vmsa\", \"cpu\": %u, \"vmsa\": \"%s\"}",
                       i, hex);
    }
    if (f.id_block_en) {
        /* psp_copy_user_blob() of both blobs */
        g_autofree uint8_t *id_auth = g_malloc(KVM_SEV_SNP_ID_AUTH_SIZE);

        id_block = g_malloc(KVM_SEV_SNP_ID_BLOCK_SIZE);
        if (standin_read_user(f.id_block_uaddr, id_block,
                              KVM_SEV_SNP_ID_BLOCK_SIZE) ||
            standin_read_user(f.id_auth_uaddr, id_auth,
                              KVM_SEV_SNP_ID_AUTH_SIZE)) {
            return standin_refuse("SNP_LAUNCH_FINISH", -EFAULT,
                                  "snp_launch_finish(): the ID block or "
                                  "its authentication");
        }
        /* The firmware: the ID block's digest must be the launch digest. */
        if (memcmp(id_block, snp.ld, STANDIN_DIGEST_SIZE)) {
            cmd->error = SEV_RET_BAD_MEASUREMENT;
            return standin_refuse("SNP_LAUNCH_FINISH", -EIO,
                                  "firmware: the ID block's launch digest "
                                  "is not the measured one");
        }
    }
    snp.finished = true;
    digest = standin_hex(snp.ld, STANDIN_DIGEST_SIZE);
    host_data = standin_hex(f.host_data, sizeof(f.host_data));
    standin_report("{\"event\": \"measurement\", \"type\": \"sev-snp\", "
                   "\"measurement\": \"%s\", \"pages\": %u, \"vcpus\": %u, "
                   "\"id-block-en\": %u, \"auth-key-en\": %u, "
                   "\"host-data\": \"%s\"}", digest, snp.pages,
                   standin.nr_vcpus, f.id_block_en, f.auth_key_en, host_data);
    return 0;
}

long snp_vm_encrypt_op(void *arg)
{
    struct kvm_sev_cmd cmd;
    int ret;

    if (standin_read_user((uintptr_t)arg, &cmd, sizeof(cmd))) {
        return -EFAULT;
    }
    switch (cmd.id) {
    case KVM_SEV_INIT2:
        ret = snp_init2(&cmd);
        break;
    case KVM_SEV_SNP_LAUNCH_START:
        ret = snp_launch_start(&cmd);
        break;
    case KVM_SEV_SNP_LAUNCH_UPDATE:
        ret = snp_launch_update(&cmd);
        break;
    case KVM_SEV_SNP_LAUNCH_FINISH:
        ret = snp_launch_finish(&cmd);
        break;
    default:
        ret = snp.initialized && cmd.id < KVM_SEV_SNP_LAUNCH_START ? -EPERM
                                                                   : -EINVAL;
        standin_refuse("KVM_MEMORY_ENCRYPT_OP", ret,
                       "sev_mem_enc_ioctl(): not an SNP launch command");
    }
    /* sev_mem_enc_ioctl() copies the command (its error) back. */
    if (standin_write_user((uintptr_t)arg, &cmd, sizeof(cmd))) {
        return -EFAULT;
    }
    return ret;
}
