/*
 * edgekit's instruction-counting TCG plugin for qemu-user: guest instructions per inference.
 *
 * SPDX-License-Identifier: Apache-2.0 (this file, edgekit's own code). It is compiled at set-up time
 * (`edgekit devices setup`) against include/qemu/qemu-plugin.h from Debian's qemu source package,
 * which is GPL-2.0-or-later and is not shipped with edgekit; the compiled .so stays on the machine.
 *
 * The guest (edgekit/profile/ondevice.py --markers) issues syscall(MARKER_SYSCALL, MARKER_BEGIN)
 * before each timed inference and syscall(MARKER_SYSCALL, MARKER_END) after it; the number is far
 * above any real syscall, so qemu answers ENOSYS and nothing else happens. Every translated block
 * adds its instruction count to one counter when it executes; at MARKER_END the plugin appends the
 * instructions executed since MARKER_BEGIN, one decimal number per line, to the file given as out=PATH.
 *
 * Arguments: out=PATH (required); atomic=on|off (default off). With off the counter is updated by
 * inline TCG code (fastest, exact for one guest thread); with on, by a callback that adds atomically,
 * which keeps the total exact when the runtime runs several threads (qemu-user runs them in parallel).
 * Counting at block granularity adds the few instructions of the block holding the marker's svc.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* Must match MARKER_SYSCALL, MARKER_BEGIN and MARKER_END in edgekit/profile/ondevice.py. */
#define MARKER_SYSCALL 0xED6E
#define MARKER_BEGIN 0x45444731
#define MARKER_END 0x45444730

static uint64_t executed;        /* guest instructions executed so far, all threads */
static uint64_t begin_count;     /* value of `executed` at the last MARKER_BEGIN */
static bool counting;            /* between a MARKER_BEGIN and its MARKER_END */
static bool atomic_count;
static FILE *out;
static GMutex out_lock;

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    __atomic_fetch_add(&executed, (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n_insns = qemu_plugin_tb_n_insns(tb);

    if (atomic_count) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n_insns);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n_insns);
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                       uint64_t a8)
{
    if (num != MARKER_SYSCALL) {
        return;
    }
    uint64_t now = __atomic_load_n(&executed, __ATOMIC_RELAXED);
    g_mutex_lock(&out_lock);
    if (a1 == MARKER_BEGIN) {
        begin_count = now;
        counting = true;
    } else if (a1 == MARKER_END && counting) {
        fprintf(out, "%" PRIu64 "\n", now - begin_count);
        fflush(out);
        counting = false;
    }
    g_mutex_unlock(&out_lock);
}

static void plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    if (out) {
        fclose(out);
        out = NULL;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    const char *out_path = NULL;

    for (int i = 0; i < argc; i++) {
        g_auto(GStrv) tokens = g_strsplit(argv[i], "=", 2);
        if (g_strcmp0(tokens[0], "out") == 0 && tokens[1]) {
            out_path = argv[i] + strlen("out=");
        } else if (g_strcmp0(tokens[0], "atomic") == 0) {
            if (!qemu_plugin_bool_parse(tokens[0], tokens[1], &atomic_count)) {
                fprintf(stderr, "edgekit insn plugin: bad boolean: %s\n", argv[i]);
                return -1;
            }
        } else {
            fprintf(stderr, "edgekit insn plugin: unknown argument: %s (expected out=PATH, atomic=on|off)\n", argv[i]);
            return -1;
        }
    }
    if (!out_path) {
        fprintf(stderr, "edgekit insn plugin: missing out=PATH\n");
        return -1;
    }
    out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "edgekit insn plugin: cannot write %s\n", out_path);
        return -1;
    }
    g_mutex_init(&out_lock);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
