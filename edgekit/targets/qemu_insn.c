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
 * Arguments: out=PATH (required); atomic=on|off (default off); symbols=PATH (see below). With off the
 * counters are updated by inline TCG code (fastest, exact for one guest thread); with on, by a callback
 * that adds atomically, which keeps the totals exact when the runtime runs several threads (qemu-user
 * runs them in parallel).
 * Counting at block granularity adds the few instructions of the block holding the marker's svc.
 *
 * symbols=PATH (optional): also count per translated block (keyed by its guest address and length)
 * and, at every MARKER_END, append to PATH the blocks that ran since MARKER_BEGIN:
 *     interval N
 *     <guest vaddr hex> <instructions in the block> <instructions executed> <symbol or ->
 * The symbol is qemu_plugin_insn_symbol() of the block's first instruction, which knows only the ELF
 * images qemu loaded itself (the program and its dynamic loader), not the libraries the guest dlopens;
 * so at the first MARKER_END the plugin also writes the file mappings of the guest,
 *     map <guest start hex> <guest end hex> <file offset hex> <host path>
 * (qemu-user maps guest files into its own address space at guest address + guest_base), and edgekit
 * resolves those addresses against the files' symbol tables (edgekit/targets/qemu_symbols.py).
 * Every executed block is counted in exactly one line, so an interval's lines add up to its total.
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

/* symbols=PATH: one slot per translated block, counted like `executed` */
typedef struct {
    uint64_t vaddr;
    uint64_t count;        /* instructions executed in this block so far */
    uint64_t at_begin;     /* `count` at the last MARKER_BEGIN */
    uint32_t n_insns;
    char *symbol;          /* qemu's symbol for the first instruction, or NULL */
} Block;

static FILE *symbols_out;
static GHashTable *blocks;     /* (n_insns << 48 | vaddr) -> Block* */
static GPtrArray *block_list;  /* every Block, in creation order */
static uint64_t intervals;
static bool maps_written;
static intptr_t guest_base;    /* host address - guest address (qemu-user maps the guest at guest_base) */
static bool guest_base_known;

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    __atomic_fetch_add(&executed, (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void block_exec(unsigned int vcpu_index, void *udata)
{
    Block *block = udata;
    __atomic_fetch_add(&executed, block->n_insns, __ATOMIC_RELAXED);
    __atomic_fetch_add(&block->count, block->n_insns, __ATOMIC_RELAXED);
}

/* The slot of a translated block; a block translated again (same address and length) keeps its slot. */
static Block *block_for(struct qemu_plugin_tb *tb, size_t n_insns)
{
    uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    uint64_t key = ((uint64_t)n_insns << 48) | vaddr;
    struct qemu_plugin_insn *first = qemu_plugin_tb_get_insn(tb, 0);

    g_mutex_lock(&out_lock);
    Block *block = g_hash_table_lookup(blocks, &key);
    if (!block) {
        uint64_t *stored_key = g_new(uint64_t, 1);
        const char *symbol = qemu_plugin_insn_symbol(first);
        *stored_key = key;
        block = g_new0(Block, 1);
        block->vaddr = vaddr;
        block->n_insns = n_insns;
        block->symbol = symbol ? g_strdup(symbol) : NULL;
        g_hash_table_insert(blocks, stored_key, block);
        g_ptr_array_add(block_list, block);
    }
    if (!guest_base_known) {
        guest_base = (intptr_t)qemu_plugin_insn_haddr(first) - (intptr_t)qemu_plugin_insn_vaddr(first);
        guest_base_known = true;
    }
    g_mutex_unlock(&out_lock);
    return block;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n_insns = qemu_plugin_tb_n_insns(tb);

    if (symbols_out && n_insns) {
        Block *block = block_for(tb, n_insns);
        if (atomic_count) {
            qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec, QEMU_PLUGIN_CB_NO_REGS, block);
        } else {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n_insns);
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &block->count, n_insns);
        }
    } else if (atomic_count) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n_insns);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n_insns);
    }
}

static void blocks_begin(void)
{
    for (guint i = 0; i < block_list->len; i++) {
        Block *block = g_ptr_array_index(block_list, i);
        block->at_begin = __atomic_load_n(&block->count, __ATOMIC_RELAXED);
    }
}

/* The file mappings of this process, at guest addresses. qemu maps guest code without host execute
 * permission (it translates it), so every file mapping is listed; the host's own lie outside the guest's. */
static void write_maps(void)
{
    g_autofree char *maps = NULL;

    if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL)) {
        return;
    }
    g_auto(GStrv) lines = g_strsplit(maps, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        uint64_t start, end, offset;
        char perms[8];
        int path_at = 0;
        if (sscanf(lines[i], "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %*s %*s %n", &start, &end, perms, &offset,
                   &path_at) < 4 || !path_at || lines[i][path_at] != '/' || start < (uint64_t)guest_base) {
            continue;
        }
        fprintf(symbols_out, "map %" PRIx64 " %" PRIx64 " %" PRIx64 " %s\n", start - guest_base, end - guest_base,
                offset, lines[i] + path_at);
    }
}

static void blocks_end(void)
{
    fprintf(symbols_out, "interval %" PRIu64 "\n", ++intervals);
    for (guint i = 0; i < block_list->len; i++) {
        Block *block = g_ptr_array_index(block_list, i);
        uint64_t ran = __atomic_load_n(&block->count, __ATOMIC_RELAXED) - block->at_begin;
        if (ran) {
            fprintf(symbols_out, "%" PRIx64 " %u %" PRIu64 " %s\n", block->vaddr, block->n_insns, ran,
                    block->symbol ? block->symbol : "-");
        }
    }
    if (!maps_written && guest_base_known) {
        write_maps();
        maps_written = true;
    }
    fflush(symbols_out);
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
        if (symbols_out) {
            blocks_begin();
        }
    } else if (a1 == MARKER_END && counting) {
        fprintf(out, "%" PRIu64 "\n", now - begin_count);
        fflush(out);
        counting = false;
        if (symbols_out) {
            blocks_end();
        }
    }
    g_mutex_unlock(&out_lock);
}

static void plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    if (out) {
        fclose(out);
        out = NULL;
    }
    if (symbols_out) {
        fclose(symbols_out);
        symbols_out = NULL;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    const char *out_path = NULL;
    const char *symbols_path = NULL;

    for (int i = 0; i < argc; i++) {
        g_auto(GStrv) tokens = g_strsplit(argv[i], "=", 2);
        if (g_strcmp0(tokens[0], "out") == 0 && tokens[1]) {
            out_path = argv[i] + strlen("out=");
        } else if (g_strcmp0(tokens[0], "symbols") == 0 && tokens[1]) {
            symbols_path = argv[i] + strlen("symbols=");
        } else if (g_strcmp0(tokens[0], "atomic") == 0) {
            if (!qemu_plugin_bool_parse(tokens[0], tokens[1], &atomic_count)) {
                fprintf(stderr, "edgekit insn plugin: bad boolean: %s\n", argv[i]);
                return -1;
            }
        } else {
            fprintf(stderr, "edgekit insn plugin: unknown argument: %s (expected out=PATH, atomic=on|off, symbols=PATH)\n", argv[i]);
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
    if (symbols_path) {
        symbols_out = fopen(symbols_path, "w");
        if (!symbols_out) {
            fprintf(stderr, "edgekit insn plugin: cannot write %s\n", symbols_path);
            return -1;
        }
        blocks = g_hash_table_new(g_int64_hash, g_int64_equal);
        block_list = g_ptr_array_new();
    }
    g_mutex_init(&out_lock);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
