/*
 * sovinfra's NVML simulator: a libnvidia-ml.so.1 that the unmodified pynvml loads.
 *
 * It reads the GPU profile (YAML) named by SOVINFRA_NVML_PROFILE (else /etc/sovinfra/nvml-profile.yml,
 * where the lab's stand-in driver package expects it) at every nvmlInit and answers the
 * NVML calls the health checks make, with the exact C signatures of NVIDIA's nvml.h. What a profile
 * leaves out answers NVML_ERROR_NOT_SUPPORTED, as a real driver does for a feature a GPU lacks;
 * functions not implemented here are simply absent, so pynvml raises FunctionNotFound, as it does
 * with an old driver. Profile errors are printed to stderr naming the file and the key, and
 * nvmlInit fails with NVML_ERROR_UNKNOWN; sovsim_last_error() returns the same text.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define EXPORT __attribute__((visibility("default")))
#define DEFAULT_PROFILE "/etc/sovinfra/nvml-profile.yml"
#define STANDIN_DRIVER_VERSION "/usr/share/sovinfra-standin/driver-version"
#define MAX_GPUS 64
#define MAX_LINKS 36
#define MAX_PROCS 32
#define MAX_XIDS 32

typedef struct {
    int present; /* the profile lists this GPU (lost GPUs are present but not visible) */
    int lost;
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
    char serial[NVML_DEVICE_SERIAL_BUFFER_SIZE];
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    char bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
    unsigned int pci_device_id;
    unsigned long long memory_total_mib, memory_used_mib;
    int has_pcie;
    unsigned int pcie_gen, pcie_gen_max, pcie_width, pcie_width_max;
    unsigned int temperature_c, slowdown_c, shutdown_c;
    unsigned int power_mw, power_limit_mw;
    unsigned long long clocks_event_reasons;
    int has_ecc, ecc_enabled;
    unsigned long long ecc_vol_unc, ecc_vol_cor, ecc_agg_unc, ecc_agg_cor;
    int has_remap;
    unsigned int remap_cor, remap_unc, remap_pending, remap_failure;
    int has_retired;
    unsigned int retired_dbe, retired_sbe, retired_pending;
    unsigned int nvlink_count;
    int nvlink_down[MAX_LINKS];
    unsigned long long nvlink_replay[MAX_LINKS], nvlink_recovery[MAX_LINKS], nvlink_crc[MAX_LINKS];
    int has_persistence, persistence;
    int has_mig;
    unsigned int mig_current, mig_pending;
    int has_fabric;
    unsigned int fabric_state;
    nvmlReturn_t fabric_status;
    unsigned int nprocs;
    unsigned int proc_pid[MAX_PROCS];
    unsigned long long proc_mem_mib[MAX_PROCS];
    unsigned int nxids;
    unsigned long long xids[MAX_XIDS];
} sim_gpu;

static sim_gpu g_gpus[MAX_GPUS];
static unsigned int g_ngpus;            /* listed in the profile */
static sim_gpu *g_visible[MAX_GPUS];    /* what NVML enumerates: lost GPUs shift the indices */
static unsigned int g_nvisible;
static char g_driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
static int g_cuda_version;
static int g_refcount;
static char g_error[1024];

EXPORT const char *sovsim_last_error(void) { return g_error; }

/* ---------- profile parsing ---------- */

typedef struct {
    yaml_document_t *doc;
    const char *file;
    char path[256];
    int failed;
} ctx_t;

static void fail(ctx_t *c, const char *key, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(g_error, sizeof g_error, "%s: %s%s%s: %s", c->file, c->path, (c->path[0] && key[0]) ? "." : "", key,
             msg);
    fprintf(stderr, "sovinfra nvml simulator: %s\n", g_error);
}

static const char *scalar(yaml_node_t *n) {
    return (n && n->type == YAML_SCALAR_NODE) ? (const char *)n->data.scalar.value : NULL;
}

static int is_null(yaml_node_t *n) {
    const char *s = scalar(n);
    return n == NULL || (s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         (!strcmp(s, "null") || !strcmp(s, "~") || !strcmp(s, "")));
}

static int get_uint(ctx_t *c, yaml_node_t *n, const char *key, unsigned long long max, unsigned long long *out) {
    const char *s = scalar(n);
    char *end;
    if (!s || !*s || *s == '-') {
        fail(c, key, "must be a whole number >= 0");
        return 0;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v > max) {
        fail(c, key, "must be a whole number between 0 and %llu, got '%s'", max, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int get_bool(ctx_t *c, yaml_node_t *n, const char *key, int *out) {
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes"))) { *out = 1; return 1; }
    if (s && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no"))) { *out = 0; return 1; }
    fail(c, key, "must be true or false");
    return 0;
}

static void get_str(ctx_t *c, yaml_node_t *n, const char *key, char *out, size_t size) {
    const char *s = scalar(n);
    if (!s || !*s) { fail(c, key, "must be a non-empty string"); return; }
    if (strlen(s) >= size) { fail(c, key, "longer than %zu characters", size - 1); return; }
    strcpy(out, s);
}

static unsigned int u32(ctx_t *c, yaml_node_t *n, const char *key) {
    unsigned long long v = 0;
    get_uint(c, n, key, 0xFFFFFFFFull, &v);
    return (unsigned int)v;
}

static unsigned long long u64(ctx_t *c, yaml_node_t *n, const char *key) {
    unsigned long long v = 0;
    get_uint(c, n, key, ~0ull, &v);
    return v;
}

/* Iterate a mapping; every key must be one of `allowed` (catches typos in profiles). */
#define FOR_PAIRS(c, node, pair)                                                                            \
    for (yaml_node_pair_t *pair = (node)->data.mapping.pairs.start; pair < (node)->data.mapping.pairs.top; pair++)

static yaml_node_t *node_at(ctx_t *c, int id) { return yaml_document_get_node(c->doc, id); }

static int expect_map(ctx_t *c, yaml_node_t *n, const char *key) {
    if (!n || n->type != YAML_MAPPING_NODE) { fail(c, key, "must be a mapping"); return 0; }
    return 1;
}

static int expect_seq(ctx_t *c, yaml_node_t *n, const char *key) {
    if (!n || n->type != YAML_SEQUENCE_NODE) { fail(c, key, "must be a list"); return 0; }
    return 1;
}

static void push(ctx_t *c, const char *key, char *saved) {
    strcpy(saved, c->path);
    size_t len = strlen(c->path);
    snprintf(c->path + len, sizeof c->path - len, "%s%s", len ? "." : "", key);
}

static void pop(ctx_t *c, const char *saved) { strcpy(c->path, saved); }

static const struct { const char *name; unsigned long long bit; } CLOCK_REASONS[] = {
    {"gpu_idle", nvmlClocksEventReasonGpuIdle},
    {"applications_clocks", nvmlClocksEventReasonApplicationsClocksSetting},
    {"sw_power_cap", nvmlClocksEventReasonSwPowerCap},
    {"hw_slowdown", nvmlClocksThrottleReasonHwSlowdown},
    {"sync_boost", nvmlClocksEventReasonSyncBoost},
    {"sw_thermal", nvmlClocksEventReasonSwThermalSlowdown},
    {"hw_thermal", nvmlClocksThrottleReasonHwThermalSlowdown},
    {"hw_power_brake", nvmlClocksThrottleReasonHwPowerBrakeSlowdown},
    {"display_clock", nvmlClocksEventReasonDisplayClockSetting},
};

static void parse_clock_reasons(ctx_t *c, yaml_node_t *n, sim_gpu *g) {
    if (scalar(n)) { g->clocks_event_reasons = u64(c, n, "clocks_event_reasons"); return; }
    if (!expect_seq(c, n, "clocks_event_reasons")) return;
    g->clocks_event_reasons = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *s = scalar(node_at(c, *it));
        size_t i;
        for (i = 0; s && i < sizeof CLOCK_REASONS / sizeof CLOCK_REASONS[0]; i++)
            if (!strcmp(s, CLOCK_REASONS[i].name)) break;
        if (!s || i == sizeof CLOCK_REASONS / sizeof CLOCK_REASONS[0]) {
            fail(c, "clocks_event_reasons", "unknown reason '%s' (known: gpu_idle, applications_clocks, "
                 "sw_power_cap, hw_slowdown, sync_boost, sw_thermal, hw_thermal, hw_power_brake, display_clock)",
                 s ? s : "?");
            return;
        }
        g->clocks_event_reasons |= CLOCK_REASONS[i].bit;
    }
}

static void parse_link_counters(ctx_t *c, yaml_node_t *n, const char *key, unsigned long long *dest) {
    char saved[256];
    if (!expect_map(c, n, key)) return;
    push(c, key, saved);
    FOR_PAIRS(c, n, p) {
        const char *k = scalar(node_at(c, p->key));
        unsigned long long link = 0;
        if (!get_uint(c, node_at(c, p->key), k ? k : "?", MAX_LINKS - 1, &link)) break;
        dest[link] = u64(c, node_at(c, p->value), k);
    }
    pop(c, saved);
}

static void parse_nvlinks(ctx_t *c, yaml_node_t *n, sim_gpu *g) {
    char saved[256];
    if (!expect_map(c, n, "nvlinks")) return;
    push(c, "nvlinks", saved);
    FOR_PAIRS(c, n, p) {
        const char *k = scalar(node_at(c, p->key));
        yaml_node_t *v = node_at(c, p->value);
        if (!k) { fail(c, "?", "keys must be strings"); break; }
        if (!strcmp(k, "count")) {
            unsigned long long count = 0;
            if (get_uint(c, v, k, MAX_LINKS, &count)) g->nvlink_count = (unsigned int)count;
        } else if (!strcmp(k, "down")) {
            if (!expect_seq(c, v, k)) break;
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                unsigned long long link = 0;
                if (get_uint(c, node_at(c, *it), k, MAX_LINKS - 1, &link)) g->nvlink_down[link] = 1;
            }
        } else if (!strcmp(k, "replay_errors")) parse_link_counters(c, v, k, g->nvlink_replay);
        else if (!strcmp(k, "recovery_errors")) parse_link_counters(c, v, k, g->nvlink_recovery);
        else if (!strcmp(k, "crc_errors")) parse_link_counters(c, v, k, g->nvlink_crc);
        else fail(c, k, "unknown key (known: count, down, replay_errors, recovery_errors, crc_errors)");
    }
    pop(c, saved);
}

static void parse_section(ctx_t *c, yaml_node_t *n, const char *section, sim_gpu *g) {
    char saved[256];
    if (!expect_map(c, n, section)) return;
    push(c, section, saved);
    FOR_PAIRS(c, n, p) {
        const char *k = scalar(node_at(c, p->key));
        yaml_node_t *v = node_at(c, p->value);
        if (!k) { fail(c, "?", "keys must be strings"); break; }
        int b = 0;
        if (!strcmp(section, "pcie")) {
            if (!strcmp(k, "gen")) g->pcie_gen = u32(c, v, k);
            else if (!strcmp(k, "gen_max")) g->pcie_gen_max = u32(c, v, k);
            else if (!strcmp(k, "width")) g->pcie_width = u32(c, v, k);
            else if (!strcmp(k, "width_max")) g->pcie_width_max = u32(c, v, k);
            else fail(c, k, "unknown key (known: gen, gen_max, width, width_max)");
        } else if (!strcmp(section, "ecc")) {
            if (!strcmp(k, "enabled")) { if (get_bool(c, v, k, &b)) g->ecc_enabled = b; }
            else if (!strcmp(k, "volatile_uncorrected")) g->ecc_vol_unc = u64(c, v, k);
            else if (!strcmp(k, "volatile_corrected")) g->ecc_vol_cor = u64(c, v, k);
            else if (!strcmp(k, "aggregate_uncorrected")) g->ecc_agg_unc = u64(c, v, k);
            else if (!strcmp(k, "aggregate_corrected")) g->ecc_agg_cor = u64(c, v, k);
            else fail(c, k, "unknown key (known: enabled, volatile_uncorrected, volatile_corrected, "
                      "aggregate_uncorrected, aggregate_corrected)");
        } else if (!strcmp(section, "remapped_rows")) {
            if (!strcmp(k, "correctable")) g->remap_cor = u32(c, v, k);
            else if (!strcmp(k, "uncorrectable")) g->remap_unc = u32(c, v, k);
            else if (!strcmp(k, "pending")) { if (get_bool(c, v, k, &b)) g->remap_pending = (unsigned)b; }
            else if (!strcmp(k, "failure")) { if (get_bool(c, v, k, &b)) g->remap_failure = (unsigned)b; }
            else fail(c, k, "unknown key (known: correctable, uncorrectable, pending, failure)");
        } else if (!strcmp(section, "retired_pages")) {
            if (!strcmp(k, "double_bit")) g->retired_dbe = u32(c, v, k);
            else if (!strcmp(k, "single_bit")) g->retired_sbe = u32(c, v, k);
            else if (!strcmp(k, "pending")) { if (get_bool(c, v, k, &b)) g->retired_pending = (unsigned)b; }
            else fail(c, k, "unknown key (known: double_bit, single_bit, pending)");
        } else if (!strcmp(section, "mig")) {
            if (!strcmp(k, "enabled")) { if (get_bool(c, v, k, &b)) g->mig_current = (unsigned)b; }
            else if (!strcmp(k, "pending")) { if (get_bool(c, v, k, &b)) g->mig_pending = (unsigned)b; }
            else fail(c, k, "unknown key (known: enabled, pending)");
        } else if (!strcmp(section, "fabric")) {
            const char *s = scalar(v);
            if (!strcmp(k, "state")) {
                if (s && !strcmp(s, "not_supported")) g->fabric_state = NVML_GPU_FABRIC_STATE_NOT_SUPPORTED;
                else if (s && !strcmp(s, "not_started")) g->fabric_state = NVML_GPU_FABRIC_STATE_NOT_STARTED;
                else if (s && !strcmp(s, "in_progress")) g->fabric_state = NVML_GPU_FABRIC_STATE_IN_PROGRESS;
                else if (s && !strcmp(s, "completed")) g->fabric_state = NVML_GPU_FABRIC_STATE_COMPLETED;
                else fail(c, k, "must be not_supported, not_started, in_progress or completed");
            } else if (!strcmp(k, "status_ok")) {
                if (get_bool(c, v, k, &b)) g->fabric_status = b ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
            } else fail(c, k, "unknown key (known: state, status_ok)");
        }
        if (c->failed) break;
    }
    pop(c, saved);
}

static void parse_processes(ctx_t *c, yaml_node_t *n, sim_gpu *g) {
    char saved[256], item[32];
    if (!expect_seq(c, n, "processes")) return;
    push(c, "processes", saved);
    unsigned int i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top && !c->failed;
         it++, i++) {
        yaml_node_t *p = node_at(c, *it);
        snprintf(item, sizeof item, "%u", i);
        if (i >= MAX_PROCS) { fail(c, item, "at most %d processes", MAX_PROCS); break; }
        if (!expect_map(c, p, item)) break;
        char inner[256];
        push(c, item, inner);
        FOR_PAIRS(c, p, kv) {
            const char *k = scalar(node_at(c, kv->key));
            if (k && !strcmp(k, "pid")) g->proc_pid[i] = u32(c, node_at(c, kv->value), k);
            else if (k && !strcmp(k, "used_memory_mib")) g->proc_mem_mib[i] = u64(c, node_at(c, kv->value), k);
            else fail(c, k ? k : "?", "unknown key (known: pid, used_memory_mib)");
        }
        pop(c, inner);
    }
    g->nprocs = i;
    pop(c, saved);
}

static void gpu_defaults(sim_gpu *g, unsigned int index) {
    memset(g, 0, sizeof *g);
    g->present = 1;
    snprintf(g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
    snprintf(g->uuid, sizeof g->uuid, "GPU-5050a1a1-0000-4000-8000-%012x", index);
    snprintf(g->bus_id, sizeof g->bus_id, "00000000:%02X:00.0", 0x18 + index * 0x10);
    g->pci_device_id = 0x233010DE;
    g->memory_total_mib = 81559;
    g->has_pcie = 1;
    g->pcie_gen = g->pcie_gen_max = 5;
    g->pcie_width = g->pcie_width_max = 16;
    g->temperature_c = 35;
    g->slowdown_c = 87;
    g->shutdown_c = 92;
    g->power_mw = 70000;
    g->power_limit_mw = 700000;
    g->clocks_event_reasons = nvmlClocksEventReasonGpuIdle;
    g->has_ecc = g->ecc_enabled = 1;
    g->has_remap = 1;
    g->has_persistence = g->persistence = 1;
    g->has_mig = 1;
    g->fabric_status = NVML_SUCCESS;
}

static void parse_gpu(ctx_t *c, yaml_node_t *n, sim_gpu *g, unsigned int index) {
    char saved[256], item[32];
    snprintf(item, sizeof item, "gpus.%u", index);
    gpu_defaults(g, index);
    if (!expect_map(c, n, item)) return;
    push(c, item, saved);
    FOR_PAIRS(c, n, p) {
        const char *k = scalar(node_at(c, p->key));
        yaml_node_t *v = node_at(c, p->value);
        int b = 0;
        if (!k) { fail(c, "?", "keys must be strings"); break; }
        if (!strcmp(k, "name")) get_str(c, v, k, g->name, sizeof g->name);
        else if (!strcmp(k, "serial")) get_str(c, v, k, g->serial, sizeof g->serial);
        else if (!strcmp(k, "uuid")) get_str(c, v, k, g->uuid, sizeof g->uuid);
        else if (!strcmp(k, "bus_id")) get_str(c, v, k, g->bus_id, sizeof g->bus_id);
        else if (!strcmp(k, "pci_device_id")) g->pci_device_id = u32(c, v, k);
        else if (!strcmp(k, "memory_total_mib")) g->memory_total_mib = u64(c, v, k);
        else if (!strcmp(k, "memory_used_mib")) g->memory_used_mib = u64(c, v, k);
        else if (!strcmp(k, "temperature_c")) g->temperature_c = u32(c, v, k);
        else if (!strcmp(k, "slowdown_temperature_c")) g->slowdown_c = u32(c, v, k);
        else if (!strcmp(k, "shutdown_temperature_c")) g->shutdown_c = u32(c, v, k);
        else if (!strcmp(k, "power_w")) g->power_mw = u32(c, v, k) * 1000;
        else if (!strcmp(k, "power_limit_w")) g->power_limit_mw = u32(c, v, k) * 1000;
        else if (!strcmp(k, "clocks_event_reasons")) parse_clock_reasons(c, v, g);
        else if (!strcmp(k, "persistence_mode")) { if (get_bool(c, v, k, &b)) g->persistence = b; }
        else if (!strcmp(k, "lost")) { if (get_bool(c, v, k, &b)) g->lost = b; }
        else if (!strcmp(k, "nvlinks")) parse_nvlinks(c, v, g);
        else if (!strcmp(k, "processes")) parse_processes(c, v, g);
        else if (!strcmp(k, "xid_events")) {
            if (!expect_seq(c, v, k)) break;
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                if (g->nxids >= MAX_XIDS) { fail(c, k, "at most %d events", MAX_XIDS); break; }
                g->xids[g->nxids++] = u64(c, node_at(c, *it), k);
            }
        } else if (!strcmp(k, "pcie") || !strcmp(k, "ecc") || !strcmp(k, "remapped_rows") ||
                   !strcmp(k, "retired_pages") || !strcmp(k, "mig") || !strcmp(k, "fabric")) {
            /* `key: null` removes the feature: the call answers NOT_SUPPORTED */
            int on = !is_null(v);
            if (!strcmp(k, "pcie")) g->has_pcie = on;
            if (!strcmp(k, "ecc")) g->has_ecc = on;
            if (!strcmp(k, "remapped_rows")) g->has_remap = on;
            if (!strcmp(k, "retired_pages")) g->has_retired = on;
            if (!strcmp(k, "mig")) g->has_mig = on;
            if (!strcmp(k, "fabric")) g->has_fabric = on;
            if (on) parse_section(c, v, k, g);
        } else if (!strcmp(k, "persistence")) {
            fail(c, k, "unknown key (did you mean persistence_mode?)");
        } else {
            fail(c, k, "unknown key");
        }
        if (c->failed) break;
    }
    if (!c->failed && !g->serial[0]) snprintf(g->serial, sizeof g->serial, "165000000%04u", index);
    pop(c, saved);
}

static const struct { const char *name; nvmlReturn_t code; } INIT_ERRORS[] = {
    {"driver_not_loaded", NVML_ERROR_DRIVER_NOT_LOADED},
    {"no_permission", NVML_ERROR_NO_PERMISSION},
    {"lib_rm_version_mismatch", NVML_ERROR_LIB_RM_VERSION_MISMATCH},
    {"unknown", NVML_ERROR_UNKNOWN},
};

/* Installed by the lab's stand-in driver package: the node reports the driver it has installed, as a
 * real node does, whatever the profile says (upgrades and downgrades show through NVML). */
static void installed_driver_version(void) {
    FILE *fh = fopen(STANDIN_DRIVER_VERSION, "r");
    if (!fh) return;
    char line[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
    if (fgets(line, sizeof line, fh)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) snprintf(g_driver, sizeof g_driver, "%s", line);
    }
    fclose(fh);
}

/* Returns NVML_SUCCESS, or the error nvmlInit must report. */
static nvmlReturn_t load_profile(void) {
    const char *file = getenv("SOVINFRA_NVML_PROFILE");
    g_error[0] = 0;
    if (!file || !*file) {
        /* Installed as the node's libnvidia-ml.so.1 (the lab's stand-in driver): the node's profile. */
        file = DEFAULT_PROFILE;
        if (access(file, F_OK) != 0) {
            snprintf(g_error, sizeof g_error,
                     "SOVINFRA_NVML_PROFILE is not set and %s is absent: no simulated driver is loaded", file);
            return NVML_ERROR_DRIVER_NOT_LOADED;
        }
    }
    FILE *fh = fopen(file, "rb");
    if (!fh) {
        snprintf(g_error, sizeof g_error, "%s: cannot read: %s", file, strerror(errno));
        fprintf(stderr, "sovinfra nvml simulator: %s\n", g_error);
        return NVML_ERROR_UNKNOWN;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fh);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(g_error, sizeof g_error, "%s: line %zu: not valid YAML: %s", file, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "?");
        fprintf(stderr, "sovinfra nvml simulator: %s\n", g_error);
        yaml_parser_delete(&parser);
        fclose(fh);
        return NVML_ERROR_UNKNOWN;
    }
    ctx_t c = {.doc = &doc, .file = file};
    nvmlReturn_t result = NVML_SUCCESS;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    memset(g_gpus, 0, sizeof g_gpus);
    g_ngpus = g_nvisible = 0;
    snprintf(g_driver, sizeof g_driver, "580.95.05");
    g_cuda_version = 13000;
    if (!root || root->type != YAML_MAPPING_NODE) fail(&c, "", "the profile must be a mapping");
    else FOR_PAIRS(&c, root, p) {
        const char *k = scalar(node_at(&c, p->key));
        yaml_node_t *v = node_at(&c, p->value);
        if (!k) { fail(&c, "?", "keys must be strings"); break; }
        if (!strcmp(k, "driver_version")) get_str(&c, v, k, g_driver, sizeof g_driver);
        else if (!strcmp(k, "cuda_driver_version")) {
            /* 12080 or "12.8" */
            const char *s = scalar(v);
            unsigned major = 0, minor = 0;
            char extra;
            if (s && sscanf(s, "%u.%u%c", &major, &minor, &extra) == 2) g_cuda_version = (int)(major * 1000 + minor * 10);
            else g_cuda_version = (int)u32(&c, v, k);
        } else if (!strcmp(k, "init_error")) {
            if (is_null(v)) continue;
            const char *s = scalar(v);
            size_t i;
            for (i = 0; s && i < sizeof INIT_ERRORS / sizeof INIT_ERRORS[0]; i++)
                if (!strcmp(s, INIT_ERRORS[i].name)) break;
            if (!s || i == sizeof INIT_ERRORS / sizeof INIT_ERRORS[0])
                fail(&c, k, "must be driver_not_loaded, no_permission, lib_rm_version_mismatch or unknown");
            else result = INIT_ERRORS[i].code;
        } else if (!strcmp(k, "gpus")) {
            if (!expect_seq(&c, v, k)) break;
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                if (g_ngpus >= MAX_GPUS) { fail(&c, k, "at most %d GPUs", MAX_GPUS); break; }
                parse_gpu(&c, node_at(&c, *it), &g_gpus[g_ngpus], g_ngpus);
                g_ngpus++;
                if (c.failed) break;
            }
        } else if (!strcmp(k, "description")) {
            /* free text for people */
        } else {
            fail(&c, k, "unknown key (known: description, driver_version, cuda_driver_version, init_error, gpus)");
        }
        if (c.failed) break;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(fh);
    if (c.failed) return NVML_ERROR_UNKNOWN;
    if (result != NVML_SUCCESS) {
        snprintf(g_error, sizeof g_error, "%s: init_error injected", file);
        return result;
    }
    for (unsigned int i = 0; i < g_ngpus; i++)
        if (!g_gpus[i].lost) g_visible[g_nvisible++] = &g_gpus[i];
    installed_driver_version();
    return NVML_SUCCESS;
}

/* ---------- NVML API ---------- */

#define REQUIRE_INIT() do { if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED; } while (0)

static sim_gpu *dev(nvmlDevice_t d) {
    sim_gpu *g = (sim_gpu *)(void *)d;
    if (g_refcount <= 0 || g < g_gpus || g >= g_gpus + g_ngpus || !g->present) return NULL;
    return g->lost ? NULL : g;
}

#define GPU_OR_RETURN(g, d)                                  \
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;    \
    sim_gpu *g = dev(d);                                     \
    if (!g) return NVML_ERROR_INVALID_ARGUMENT;

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (g_refcount > 0) { g_refcount++; return NVML_SUCCESS; }
    nvmlReturn_t r = load_profile();
    if (r == NVML_SUCCESS) g_refcount = 1;
    return r;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    REQUIRE_INIT();
    g_refcount--;
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    REQUIRE_INIT();
    return copy_str(version, length, g_driver);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    if (!cudaDriverVersion) return NVML_ERROR_INVALID_ARGUMENT;
    REQUIRE_INIT();
    *cudaDriverVersion = g_cuda_version;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion) {
    return nvmlSystemGetCudaDriverVersion_v2(cudaDriverVersion);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    REQUIRE_INIT();
    if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = g_nvisible;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    REQUIRE_INIT();
    if (!device || index >= g_nvisible) return NVML_ERROR_INVALID_ARGUMENT;
    *device = (nvmlDevice_t)(void *)g_visible[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    GPU_OR_RETURN(g, device);
    return copy_str(name, length, g->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
    GPU_OR_RETURN(g, device);
    return copy_str(serial, length, g->serial);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    GPU_OR_RETURN(g, device);
    return copy_str(uuid, length, g->uuid);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    GPU_OR_RETURN(g, device);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < g_nvisible; i++)
        if (g_visible[i] == g) { *index = i; return NVML_SUCCESS; }
    return NVML_ERROR_INVALID_ARGUMENT;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    GPU_OR_RETURN(g, device);
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    unsigned int domain = 0, bus = 0, devno = 0, fn = 0;
    sscanf(g->bus_id, "%x:%x:%x.%x", &domain, &bus, &devno, &fn);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = devno;
    pci->pciDeviceId = g->pci_device_id;
    pci->pciSubSystemId = 0x16C110DE;
    snprintf(pci->busId, sizeof pci->busId, "%s", g->bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", domain & 0xFFFF, bus, devno, fn);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    GPU_OR_RETURN(g, device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = g->memory_total_mib << 20;
    memory->used = g->memory_used_mib << 20;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    GPU_OR_RETURN(g, device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = g->memory_total_mib << 20;
    memory->reserved = 0;
    memory->used = g->memory_used_mib << 20;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

#define PCIE_GETTER(fname, field)                                              \
    EXPORT nvmlReturn_t fname(nvmlDevice_t device, unsigned int *value) {      \
        GPU_OR_RETURN(g, device);                                              \
        if (!value) return NVML_ERROR_INVALID_ARGUMENT;                        \
        if (!g->has_pcie) return NVML_ERROR_NOT_SUPPORTED;                     \
        *value = g->field;                                                     \
        return NVML_SUCCESS;                                                   \
    }
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, pcie_gen)
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, pcie_gen_max)
PCIE_GETTER(nvmlDeviceGetGpuMaxPcieLinkGeneration, pcie_gen_max)
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkWidth, pcie_width)
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkWidth, pcie_width_max)

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType,
                                             unsigned int *temp) {
    GPU_OR_RETURN(g, device);
    if (!temp || sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = g->temperature_c;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device,
                                                      nvmlTemperatureThresholds_t thresholdType,
                                                      unsigned int *temp) {
    GPU_OR_RETURN(g, device);
    if (!temp) return NVML_ERROR_INVALID_ARGUMENT;
    switch (thresholdType) {
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: *temp = g->slowdown_c; return NVML_SUCCESS;
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: *temp = g->shutdown_c; return NVML_SUCCESS;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX: *temp = g->slowdown_c - 2; return NVML_SUCCESS;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    GPU_OR_RETURN(g, device);
    if (!power) return NVML_ERROR_INVALID_ARGUMENT;
    *power = g->power_mw;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    GPU_OR_RETURN(g, device);
    if (!limit) return NVML_ERROR_INVALID_ARGUMENT;
    *limit = g->power_limit_mw;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons) {
    GPU_OR_RETURN(g, device);
    if (!reasons) return NVML_ERROR_INVALID_ARGUMENT;
    *reasons = g->clocks_event_reasons;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(device, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current,
                                         nvmlEnableState_t *pending) {
    GPU_OR_RETURN(g, device);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_ecc) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = g->ecc_enabled ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                                nvmlEccCounterType_t counterType, unsigned long long *eccCounts) {
    GPU_OR_RETURN(g, device);
    if (!eccCounts) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_ecc || !g->ecc_enabled) return NVML_ERROR_NOT_SUPPORTED;
    int unc = errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED;
    if (counterType == NVML_VOLATILE_ECC) *eccCounts = unc ? g->ecc_vol_unc : g->ecc_vol_cor;
    else if (counterType == NVML_AGGREGATE_ECC) *eccCounts = unc ? g->ecc_agg_unc : g->ecc_agg_cor;
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause,
                                              unsigned int *pageCount, unsigned long long *addresses) {
    GPU_OR_RETURN(g, device);
    if (!pageCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_retired) return NVML_ERROR_NOT_SUPPORTED;
    unsigned int have = cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR ? g->retired_dbe : g->retired_sbe;
    if (!addresses || *pageCount < have) {  /* the size query: NULL buffer first, as pynvml does */
        unsigned int asked = *pageCount;
        *pageCount = have;
        return (!addresses && have == 0) || (addresses && asked >= have) ? NVML_SUCCESS
                                                                        : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < have; i++) addresses[i] = 0x1000ull * (i + 1) + (cause << 4);
    *pageCount = have;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending) {
    GPU_OR_RETURN(g, device);
    if (!isPending) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_retired) return NVML_ERROR_NOT_SUPPORTED;
    *isPending = g->retired_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,
                                              unsigned int *isPending, unsigned int *failureOccurred) {
    GPU_OR_RETURN(g, device);
    if (!corrRows || !uncRows || !isPending || !failureOccurred) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_remap) return NVML_ERROR_NOT_SUPPORTED;
    *corrRows = g->remap_cor;
    *uncRows = g->remap_unc;
    *isPending = g->remap_pending;
    *failureOccurred = g->remap_failure;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive) {
    GPU_OR_RETURN(g, device);
    if (!isActive) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->nvlink_count == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->nvlink_count) return NVML_ERROR_INVALID_ARGUMENT;
    *isActive = g->nvlink_down[link] ? NVML_FEATURE_DISABLED : NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t device, unsigned int link,
                                                    nvmlNvLinkErrorCounter_t counter, unsigned long long *counterValue) {
    GPU_OR_RETURN(g, device);
    if (!counterValue) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->nvlink_count == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->nvlink_count) return NVML_ERROR_INVALID_ARGUMENT;
    switch (counter) {
    case NVML_NVLINK_ERROR_DL_REPLAY: *counterValue = g->nvlink_replay[link]; return NVML_SUCCESS;
    case NVML_NVLINK_ERROR_DL_RECOVERY: *counterValue = g->nvlink_recovery[link]; return NVML_SUCCESS;
    case NVML_NVLINK_ERROR_DL_CRC_FLIT: *counterValue = g->nvlink_crc[link]; return NVML_SUCCESS;
    case NVML_NVLINK_ERROR_DL_CRC_DATA: *counterValue = 0; return NVML_SUCCESS;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode) {
    GPU_OR_RETURN(g, device);
    if (!mode) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_persistence) return NVML_ERROR_NOT_SUPPORTED;
    *mode = g->persistence ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    GPU_OR_RETURN(g, device);
    if (!currentMode || !pendingMode) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_mig) return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = g->mig_current;
    *pendingMode = g->mig_pending;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfo(nvmlDevice_t device, nvmlGpuFabricInfo_t *info) {
    GPU_OR_RETURN(g, device);
    if (!info) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_fabric) return NVML_ERROR_NOT_SUPPORTED;
    memset(info, 0, sizeof *info);
    info->state = (nvmlGpuFabricState_t)g->fabric_state;
    info->status = g->fabric_status;
    info->cliqueId = 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                            nvmlProcessInfo_t *infos) {
    GPU_OR_RETURN(g, device);
    if (!infoCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (!infos || *infoCount < g->nprocs) {
        *infoCount = g->nprocs;
        return g->nprocs == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < g->nprocs; i++) {
        infos[i].pid = g->proc_pid[i];
        infos[i].usedGpuMemory = g->proc_mem_mib[i] << 20;
        infos[i].gpuInstanceId = 0xFFFFFFFF;
        infos[i].computeInstanceId = 0xFFFFFFFF;
    }
    *infoCount = g->nprocs;
    return NVML_SUCCESS;
}

/* ---------- events: the profile's xid_events are delivered once per event set ---------- */

struct nvmlEventSet_st {
    unsigned int n, next;
    sim_gpu *gpu[MAX_GPUS * MAX_XIDS];
    unsigned long long xid[MAX_GPUS * MAX_XIDS];
};

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    REQUIRE_INIT();
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    *set = calloc(1, sizeof(struct nvmlEventSet_st));
    return *set ? NVML_SUCCESS : NVML_ERROR_MEMORY;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set) {
    GPU_OR_RETURN(g, device);
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    if (eventTypes & nvmlEventTypeXidCriticalError)
        for (unsigned int i = 0; i < g->nxids && set->n < MAX_GPUS * MAX_XIDS; i++) {
            set->gpu[set->n] = g;
            set->xid[set->n++] = g->xids[i];
        }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    REQUIRE_INIT();
    if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
    if (set->next < set->n) {
        memset(data, 0, sizeof *data);
        data->device = (nvmlDevice_t)(void *)set->gpu[set->next];
        data->eventType = nvmlEventTypeXidCriticalError;
        data->eventData = set->xid[set->next++];
        data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFF;
        return NVML_SUCCESS;
    }
    struct timespec ts = {timeoutms / 1000, (long)(timeoutms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* nothing happens: block like the driver, then time out */
    return NVML_ERROR_TIMEOUT;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    REQUIRE_INIT();
    free(set);
    return NVML_SUCCESS;
}
