/*
 * fleetwatch.sources._kmsgscan: the compiled twin of the line stream's loop over the
 * kernel records it is most often handed (kmsg_compiled.py loads it; stream.py runs it).
 *
 * Given a chunk, the prefilter's offsets and the stream's position, it reads candidate
 * lines one after another, in C, for as long as each is one it knows whole:
 *
 *   envelope  [ 1843.308145] (dmesg), 4,12,5678901,-; (/dev/kmsg), an ISO stamp with or
 *             without a syslog host (journalctl -o short-iso, dmesg --time-format iso,
 *             "kern  :err   : 2025-…"), a syslog stamp with its host and an optional
 *             kernel stamp after the ident;
 *   record    NVRM: Xid (…), NVRM: GPU at PCI:… with its serial line, NVRM: GPU …: GPU
 *             has fallen off the bus, nvidia-nvswitchN: SXid (…), a PCIe AER record
 *             ("… PCIe Bus Error: severity=…, type=…" and the lines of its device that
 *             follow: status, error bits, TLP header, /dev/kmsg's dictionary), and a
 *             line no reader claims (a prefilter hit such as "AER: Corrected error
 *             received");
 *
 * and writes each event's fields straight into the batch's typed columns
 * (BatchBuilder.columns_in_place), strings interned once per batch. It stops at the
 * first line it does not know whole (any other record, another reader's line, a byte
 * past ASCII, a line that would teach or forget something it does not keep, a record
 * that needs the next chunk) and returns where it stopped: the Python path reads that
 * line, and calls again. Each pattern below is the kmsg/envelope regular expression
 * it stands for, with the same answers on ASCII text (tests/sources/test_compiled.py
 * holds the two paths equal); "\s" is Python's: also \x1c-\x1f.
 *
 * What the file's reading state must learn goes through Python (the hooks object of
 * kmsg_compiled.py): a GPU's identity, a driver index, the last endpoint that reported
 * an AER error, a sealed batch, a month, a year, a local minute. Every block it allocates comes from PyMem (fw_alloc below), so the
 * benchmarks' allocation counter (bench/alloccount) sees it.
 *
 * The same scanner reads runs of dcgm-exporter samples (Scanner.samples, for
 * LineStream._run): a sample of a series that dcgm.py has read once and told it about
 * (the fields its samples add but line, time and value) is written into the columns
 * here, while the GPU identities it was filled in from stand; every other line goes
 * back to dcgm.read_line, which stays the definition (tests/sources/
 * test_compiled_samples.py holds the two equal).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* memrchr */
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- memory: PyMem only, so that the allocation counter sees every block ---------- */

static void *fw_alloc(size_t size) { return PyMem_Malloc(size); }
static void *fw_calloc(size_t n, size_t size) { return PyMem_Calloc(n, size); }
static void fw_free(void *ptr) { PyMem_Free(ptr); }

/* ---- what the module is told once (configure) ------------------------------------ */

enum { K_XID, K_SXID, K_GPU_LOST, K_GPU_IDENTITY, K_AER, N_KINDS };
enum { CLOCK_NONE, CLOCK_WALL, CLOCK_BOOT, N_CLOCKS };
enum { SEV_NONFATAL, SEV_FATAL, SEV_CORRECTED, N_SEVERITIES };

/* The columns written in place, in the order of FIELD_NAMES. */
enum {
    F_KIND, F_TS, F_CLOCK, F_SOURCE, F_FILE, F_LINE, F_NODE, F_PCI, F_GPU, F_UUID,
    F_SERIAL, F_CODE, F_SEVERITY, F_PID, F_PROCESS, F_DETAIL, F_LINK, F_SCOPE, F_VALUE,
    F_POD, F_NAMESPACE, N_FIELDS
};
static const char *FIELD_NAMES[N_FIELDS] = {
    "kind", "ts", "clock", "source", "file", "line", "node", "pci", "gpu", "uuid",
    "serial", "code", "severity", "pid", "process", "detail", "link", "scope", "value",
    "pod", "namespace",
};
static const Py_ssize_t FIELD_SIZES[N_FIELDS] = {1, 8, 1, 1, 4, 8, 4, 4, 4, 4, 4,
                                                 8, 1, 8, 4, 4, 4, 1, 8, 4, 4};

typedef struct {
    char *text;
    Py_ssize_t n;
} Word;

typedef struct {
    Word *words;
    Py_ssize_t n;
} Words;

static struct {
    int ready;
    int kind[N_KINDS];
    int clock[N_CLOCKS];
    int severity[N_SEVERITIES];
    int source;
    Py_ssize_t batch_size;
    double earliest, latest; /* the times a clock can show (envelope.EARLIEST/LATEST) */
    Words claims;            /* the kmsg reader's claim words */
    Words before;            /* words of the readers asked before it */
    Words after;             /* words of the readers asked after it */
    int dcgm_source;         /* the dcgm reader's source */
    Words sample_starts;     /* how the dcgm reader's lines start (Reader.line_starts) */
    Words sample_before;     /* words of the readers asked before it that claim a line */
    Word aer_names[2][32];   /* catalog/aer.toml: [0] correctable, [1] uncorrectable */
    PyObject *identities;    /* context.Identities: its lookup is two dict reads */
} cfg;

/* Interned attribute and method names. */
static PyObject *s_builder, *s_identities, *s_node, *s_name, *s_node_is_file_name,
    *s_last_boot_ts, *s_stats, *s_boot_anchors, *s_file_nodes, *s_columns_in_place,
    *s_intern, *s_added_in_place, *s_lookup, *s_by_node, *s_uuid, *s_serial, *s_gpu,
    *s_learn_index, *s_learn_identity, *s_month, *s_year, *s_minute, *s_out_of_range,
    *s_version, *s_blank_samples, *s_saw_endpoint;

static PyObject *get(PyObject *obj, PyObject *name) { return PyObject_GetAttr(obj, name); }

/* ---- bytes as Python's re and str see ASCII text ---------------------------------- */

static inline int is_space(unsigned char c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static inline int is_word(unsigned char c) { return is_digit(c) || is_alpha(c) || c == '_'; }
static inline int is_hex(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline int hex_value(unsigned char c) {
    return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}
static inline unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

typedef struct {
    const unsigned char *s;
    Py_ssize_t n;
} Line;

typedef struct {
    Py_ssize_t at, n; /* n < 0: absent */
} Span;

/* The first needle in L[from:], or -1. Not memmem: glibc's sets up a shift table on
 * every call, a sixth of this loop's time on a kernel log. The needles are this file's
 * literals (a few dozen bytes at most), so the compare after each first byte found
 * keeps the search linear in the line. */
static Py_ssize_t find(const Line *L, Py_ssize_t from, const char *needle, Py_ssize_t m) {
    if (from > L->n || L->n - from < m) return -1;
    if (m == 0) return from;
    const unsigned char *p = L->s + from, *last = L->s + L->n - m;
    const unsigned char first = (unsigned char)needle[0];
    while (p <= last) {
        p = memchr(p, first, (size_t)(last - p + 1));
        if (p == NULL) return -1;
        if (memcmp(p + 1, needle + 1, (size_t)(m - 1)) == 0) return p - L->s;
        p++;
    }
    return -1;
}
#define FIND(L, from, lit) find((L), (from), (lit), (Py_ssize_t)sizeof(lit) - 1)
#define HAS(L, lit) (FIND((L), 0, (lit)) >= 0)

static int starts(const Line *L, Py_ssize_t at, const char *lit) {
    Py_ssize_t m = (Py_ssize_t)strlen(lit);
    return at >= 0 && at + m <= L->n && memcmp(L->s + at, lit, (size_t)m) == 0;
}

static int has_any(const Line *L, const Words *w) {
    for (Py_ssize_t i = 0; i < w->n; i++) {
        if (find(L, 0, w->words[i].text, w->words[i].n) >= 0) return 1;
    }
    return 0;
}

static Py_ssize_t skip_spaces(const Line *L, Py_ssize_t j) {
    while (j < L->n && is_space(L->s[j])) j++;
    return j;
}
static Py_ssize_t skip_digits(const Line *L, Py_ssize_t j) {
    while (j < L->n && is_digit(L->s[j])) j++;
    return j;
}

/* numbers.whole: a run of digits as an int no larger than most; -1 past it. */
static long long whole(const unsigned char *s, Py_ssize_t n, long long most) {
    while (n > 0 && *s == '0') {
        s++;
        n--;
    }
    if (n > 19) return -1;
    unsigned long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = v * 10 + (unsigned long long)(s[i] - '0');
    return v > (unsigned long long)most ? -1 : (long long)v;
}
#define INT64_MOST 9223372036854775807LL
#define INT32_MOST 2147483647LL

static long digits_value(const Line *L, Py_ssize_t at, Py_ssize_t n) {
    long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = v * 10 + (L->s[at + i] - '0');
    return v;
}

/* ---- PCI addresses ---------------------------------------------------------------- */

typedef struct {
    char text[24]; /* normalize_pci's spelling: dddd:bb:dd.f */
    Py_ssize_t n;
} Pci;

/* kmsg._PCI, [0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?, at at. Every
 * caller needs a character after it that none of these is, so the greedy reading is
 * the only one that can match. The index after it, or -1. */
static Py_ssize_t read_pci(const Line *L, Py_ssize_t at, Pci *out) {
    const unsigned char *s = L->s;
    Py_ssize_t j = at;
    unsigned long domain = 0;
    while (j < L->n && is_hex(s[j])) {
        if (j - at < 8) domain = domain * 16 + (unsigned long)hex_value(s[j]);
        j++;
    }
    Py_ssize_t k = j - at;
    if (k < 4 || k > 8 || j + 6 > L->n || s[j] != ':' || !is_hex(s[j + 1]) ||
        !is_hex(s[j + 2]) || s[j + 3] != ':' || !is_hex(s[j + 4]) || !is_hex(s[j + 5])) {
        return -1;
    }
    char function = '0';
    Py_ssize_t end = j + 6;
    if (end + 1 < L->n && s[end] == '.' && s[end + 1] >= '0' && s[end + 1] <= '7') {
        function = (char)s[end + 1];
        end += 2;
    }
    /* "%04lx:%c%c:%c%c.%c", written out: snprintf parses its format on every call */
    static const char hex[] = "0123456789abcdef";
    char digits[8];
    int nd = 0;
    do {
        digits[nd++] = hex[domain & 15];
        domain >>= 4;
    } while (domain != 0);
    while (nd < 4) digits[nd++] = '0';
    char *o = out->text;
    int w = 0;
    while (nd > 0) o[w++] = digits[--nd];
    o[w++] = ':';
    o[w++] = (char)lower(s[j + 1]);
    o[w++] = (char)lower(s[j + 2]);
    o[w++] = ':';
    o[w++] = (char)lower(s[j + 4]);
    o[w++] = (char)lower(s[j + 5]);
    o[w++] = '.';
    o[w++] = function;
    o[w] = '\0';
    out->n = w;
    return end;
}

/* ---- envelopes (envelope.parse, for the stamps it peels off the front) ------------ */

typedef struct {
    double ts;
    int clock; /* CLOCK_WALL or CLOCK_BOOT */
    Span host;
    int has_boot;
    double boot;
} Env;

typedef struct {
    int has;
    unsigned long long key;
    double base;
    int none;
} Minute;

#define N_MONTHS_CACHED 16
#define N_MINUTES_CACHED 8

/* One string of the batch: its bytes, its str, its id in the batch's string table. Each
 * is its own block, so a pointer to it holds until the table is cleared (a new batch). */
typedef struct {
    uint64_t hash;
    Py_ssize_t n;
    int32_t id; /* -1: not yet in the batch's string table */
    PyObject *str;
    unsigned char key[];
} Slot;

typedef struct {
    Slot **slots;
    Py_ssize_t cap, used;
} Table;

typedef struct {
    PyObject_HEAD
    PyObject *ctx;
    PyObject *hooks;
    PyObject *dense; /* the builder's in-place columns of this batch */
    Py_buffer views[N_FIELDS];
    int have_views;
    Py_ssize_t capacity;
    Table strings; /* bytes -> (string id, str) for this batch */
    unsigned long long generation; /* of the batch: a new one each time the columns change */
    struct SeriesTable *series;    /* the dcgm series it was told, by head */
    unsigned long long samples_call; /* counts calls of samples(): a series' currency holds
                                        for one call (no learn() runs inside it) */
    /* the file's time rules, asked once per value */
    char month_key[N_MONTHS_CACHED][8];
    int month_len[N_MONTHS_CACHED];
    int month_of[N_MONTHS_CACHED];
    int n_months;
    long year_of[13][100];
    unsigned char year_known[13][100];
    Minute minutes[N_MINUTES_CACHED];
    unsigned char *scratch;
    Py_ssize_t scratch_cap;
} Scanner;

/* float(text) of [+-]?\d*\.?\d* (at least one digit) where that is one correctly
 * rounded division: at most 15 significant digits (an integer below 2^53, exact in a
 * double) over a power of ten of at most 22 (exact too), which IEEE rounds once, as
 * strtod would (Clinger's fast path); 0 for any other text. A dcgm sample and a dmesg
 * stamp are such numbers, and PyOS_string_to_double sets and restores the x87 control
 * word around each conversion: a tenth of the dcgm sample loop's time. */
static int fast_decimal(const unsigned char *s, Py_ssize_t n, double *out) {
    static const double tens[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    Py_ssize_t i = 0;
    int negative = 0, digits = 0, significant = 0, fraction = 0, point = 0;
    uint64_t m = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
    for (; i < n; i++) {
        if (s[i] == '.' && !point) {
            point = 1;
            continue;
        }
        if (!is_digit(s[i])) return 0;
        digits++;
        if (m != 0 || s[i] != '0') significant++;
        if (significant > 15) return 0;
        m = m * 10 + (uint64_t)(s[i] - '0');
        fraction += point;
    }
    if (digits == 0 || fraction > 22) return 0;
    double v = (double)m / tens[fraction];
    *out = negative ? -v : v;
    return 1;
}

/* \[\s*(\d{1,11}\.\d+)\](?:\[\s*[TC]\d+\])?\s? (_DMESG_BOOT) at at: 1 and its value. */
static int match_dmesg_boot(Scanner *self, const Line *L, Py_ssize_t at, double *value) {
    if (at >= L->n || L->s[at] != '[') return 0;
    Py_ssize_t i = skip_spaces(L, at + 1);
    Py_ssize_t d = skip_digits(L, i);
    if (d == i || d - i > 11 || d >= L->n || L->s[d] != '.') return 0;
    Py_ssize_t f = skip_digits(L, d + 1);
    if (f == d + 1 || f >= L->n || L->s[f] != ']') return 0;
    Py_ssize_t n = f - i;
    if (fast_decimal(L->s + i, n, value)) return 1;
    if (n + 1 > self->scratch_cap) return 0; /* never: the scratch holds a whole line */
    memcpy(self->scratch, L->s + i, (size_t)n);
    self->scratch[n] = '\0';
    /* float(): the same correctly rounded conversion as Python's */
    double v = PyOS_string_to_double((const char *)self->scratch, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred()) return -1;
    *value = v;
    return 1;
}

/* \d+,\d+,(\d{1,17}),[^;]*; (_KMSG) at the start: microseconds since boot. */
static int match_kmsg(const Line *L, double *value) {
    Py_ssize_t a = skip_digits(L, 0);
    if (a == 0 || a >= L->n || L->s[a] != ',') return 0;
    Py_ssize_t b = skip_digits(L, a + 1);
    if (b == a + 1 || b >= L->n || L->s[b] != ',') return 0;
    Py_ssize_t c = skip_digits(L, b + 1);
    if (c == b + 1 || c - (b + 1) > 17 || c >= L->n || L->s[c] != ',') return 0;
    if (memchr(L->s + c, ';', (size_t)(L->n - c)) == NULL) return 0;
    unsigned long long us = 0;
    for (Py_ssize_t i = b + 1; i < c; i++) us = us * 10 + (unsigned long long)(L->s[i] - '0');
    *value = (double)us / 1e6; /* int(m[1]) / 1e6 */
    return 1;
}

typedef struct {
    long y, mo, d, h, mi, s;
    long long frac;
    int frac_digits;
    int comma; /* the fraction's separator was a comma */
    int zoned;
    long offset_s;
    Py_ssize_t end;
} Iso;

static int two_digits(const Line *L, Py_ssize_t at) {
    return at + 2 <= L->n && is_digit(L->s[at]) && is_digit(L->s[at + 1]);
}

/* envelope._ISO_LEAD:
 * (\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?\s? */
static int match_iso(const Line *L, Py_ssize_t at, Iso *t) {
    const unsigned char *s = L->s;
    if (!(two_digits(L, at) && two_digits(L, at + 2)) || at + 19 > L->n || s[at + 4] != '-' ||
        !two_digits(L, at + 5) || s[at + 7] != '-' || !two_digits(L, at + 8) ||
        (s[at + 10] != 'T' && s[at + 10] != ' ') || !two_digits(L, at + 11) ||
        s[at + 13] != ':' || !two_digits(L, at + 14) || s[at + 16] != ':' ||
        !two_digits(L, at + 17)) {
        return 0;
    }
    t->y = digits_value(L, at, 4);
    t->mo = digits_value(L, at + 5, 2);
    t->d = digits_value(L, at + 8, 2);
    t->h = digits_value(L, at + 11, 2);
    t->mi = digits_value(L, at + 14, 2);
    t->s = digits_value(L, at + 17, 2);
    Py_ssize_t j = at + 19;
    t->frac = 0;
    t->frac_digits = 0;
    t->comma = 0;
    if (j + 1 < L->n && (s[j] == '.' || s[j] == ',') && is_digit(s[j + 1])) {
        t->comma = s[j] == ',';
        j++;
        while (j < L->n && is_digit(s[j]) && t->frac_digits < 9) {
            t->frac = t->frac * 10 + (s[j] - '0');
            t->frac_digits++;
            j++;
        }
    }
    t->zoned = 0;
    t->offset_s = 0;
    if (j < L->n && s[j] == 'Z') {
        t->zoned = 1;
        j++;
    } else if (j < L->n && (s[j] == '+' || s[j] == '-') && two_digits(L, j + 1)) {
        Py_ssize_t k = j + 3;
        if (k < L->n && s[k] == ':') k++;
        if (two_digits(L, k)) {
            long sign = s[j] == '-' ? -1 : 1;
            t->offset_s = sign * (digits_value(L, j + 1, 2) * 3600 + digits_value(L, k, 2) * 60);
            t->zoned = 1;
            j = k + 2;
        }
    }
    if (j < L->n && is_space(s[j])) j++;
    t->end = j;
    return 1;
}

static const double POW10[10] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* envelope._fraction: int(digits) / 10 ** len(digits), 0.0 without digits */
static double fraction(long long digits, int n) {
    return n == 0 ? 0.0 : (double)digits / POW10[n];
}

/* days since 1970-01-01 of a proleptic Gregorian date (calendar.timegm's arithmetic) */
static long long days_from_civil(long long y, long m, long d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A Python int from a hook's answer as a C long: 1, 0 for None, -1 on error. */
static int long_or_none(PyObject *obj, long *out) {
    if (obj == Py_None) return 0;
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 1;
}

/* TimeRules.local(y, mo, d, h, mi, 0.0), asked once per minute: 1, 0 (None), -1. */
static int local_minute(Scanner *self, long y, long mo, long d, long h, long mi, double *base) {
    if (y < 0 || y > 99999 || mo < 0 || mo > 99 || d < 0 || d > 99 || h < 0 || h > 99 ||
        mi < 0 || mi > 99) {
        return 0; /* never: two-digit fields and a year the hooks gave */
    }
    unsigned long long key =
        ((((unsigned long long)y * 100 + mo) * 100 + d) * 100 + h) * 100 + mi;
    Minute *slot = &self->minutes[key % N_MINUTES_CACHED];
    if (!(slot->has && slot->key == key)) {
        long parts[5] = {y, mo, d, h, mi};
        PyObject *args[5] = {NULL};
        PyObject *got = NULL;
        int k = 0;
        while (k < 5 && (args[k] = PyLong_FromLong(parts[k])) != NULL) k++;
        if (k == 5) {
            got = PyObject_CallMethodObjArgs(self->hooks, s_minute, args[0], args[1], args[2],
                                             args[3], args[4], NULL);
        }
        for (int j = 0; j < k; j++) Py_DECREF(args[j]);
        if (got == NULL) return -1;
        double base = got == Py_None ? 0.0 : PyFloat_AsDouble(got);
        int none = got == Py_None;
        Py_DECREF(got);
        if (!none && base == -1.0 && PyErr_Occurred()) return -1;
        slot->has = 1;
        slot->key = key;
        slot->none = none;
        slot->base = base;
    }
    if (slot->none) return 0;
    *base = slot->base;
    return 1;
}

static int iso_wall(Scanner *self, const Iso *t, double *wall) {
    double sec = (double)t->s + fraction(t->frac, t->frac_digits);
    if (t->zoned) { /* TimeRules.utc */
        if (!(t->mo >= 1 && t->mo <= 12 && t->d >= 1 && t->d <= 31 && t->h < 24 && t->mi < 60)) {
            return 0;
        }
        if (t->y < 1) return 0; /* datetime.date refuses year 0 */
        long long days = days_from_civil(t->y, t->mo, 1) + t->d - 1;
        long long seconds = ((days * 24 + t->h) * 60 + t->mi) * 60;
        *wall = ((double)seconds + sec) - (double)t->offset_s;
        return 1;
    }
    double base;
    int got = local_minute(self, t->y, t->mo, t->d, t->h, t->mi, &base);
    if (got <= 0) return got;
    *wall = base + sec;
    return 1;
}

/* ([^\s:\[\]]+) [^\s:\[\]]+(?:\[\d+\])?: (_HOST_IDENT) at at: the host and the end. */
static int match_host_ident(const Line *L, Py_ssize_t at, Span *host, Py_ssize_t *end) {
    const unsigned char *s = L->s;
#define IDENT_CHAR(c) (!is_space(c) && (c) != ':' && (c) != '[' && (c) != ']')
    Py_ssize_t j = at;
    while (j < L->n && IDENT_CHAR(s[j])) j++;
    if (j == at || j >= L->n || s[j] != ' ') return 0;
    Py_ssize_t k = j + 1;
    Py_ssize_t m = k;
    while (m < L->n && IDENT_CHAR(s[m])) m++;
    if (m == k) return 0;
    if (m < L->n && s[m] == '[') {
        Py_ssize_t p = skip_digits(L, m + 1);
        if (p > m + 1 && p < L->n && s[p] == ']') m = p + 1;
    }
    if (!starts(L, m, ": ")) return 0;
#undef IDENT_CHAR
    host->at = at;
    host->n = j - at;
    *end = m + 2;
    return 1;
}

/* [a-z]+\s*:[a-z]+\s*: (_FACILITY) at the start. */
static int match_facility(const Line *L, Py_ssize_t *end) {
    Py_ssize_t j = 0;
    while (j < L->n && L->s[j] >= 'a' && L->s[j] <= 'z') j++;
    if (j == 0) return 0;
    j = skip_spaces(L, j);
    if (j >= L->n || L->s[j] != ':') return 0;
    Py_ssize_t k = ++j;
    while (j < L->n && L->s[j] >= 'a' && L->s[j] <= 'z') j++;
    if (j == k) return 0;
    j = skip_spaces(L, j);
    if (!starts(L, j, ": ")) return 0;
    *end = j + 2;
    return 1;
}

/* timestamps.month_number of an ASCII token, asked once per spelling: 1-12, 0, -1. */
static int month_number(Scanner *self, const unsigned char *p, Py_ssize_t n) {
    for (int i = 0; i < self->n_months; i++) {
        if (self->month_len[i] == n && memcmp(self->month_key[i], p, (size_t)n) == 0) {
            return self->month_of[i];
        }
    }
    PyObject *token = PyUnicode_FromStringAndSize((const char *)p, n);
    if (token == NULL) return -1;
    PyObject *got = PyObject_CallMethodObjArgs(self->hooks, s_month, token, NULL);
    Py_DECREF(token);
    if (got == NULL) return -1;
    long month = 0;
    int r = long_or_none(got, &month);
    Py_DECREF(got);
    if (r < 0) return -1;
    if (r == 0 || month < 1 || month > 12) month = 0;
    if (self->n_months < N_MONTHS_CACHED) {
        int i = self->n_months++;
        memcpy(self->month_key[i], p, (size_t)n);
        self->month_len[i] = (int)n;
        self->month_of[i] = (int)month;
    }
    return (int)month;
}

/* TimeRules.infer_year, asked once per (month, day): 1, -1. */
static int infer_year(Scanner *self, long month, long day, long *year) {
    if (!self->year_known[month][day]) {
        PyObject *m = PyLong_FromLong(month), *d = PyLong_FromLong(day);
        PyObject *got = m && d ? PyObject_CallMethodObjArgs(self->hooks, s_year, m, d, NULL) : NULL;
        Py_XDECREF(m);
        Py_XDECREF(d);
        if (got == NULL) return -1;
        long y = 0;
        int r = long_or_none(got, &y);
        Py_DECREF(got);
        if (r <= 0) {
            if (r == 0) PyErr_SetString(PyExc_TypeError, "infer_year gave no year");
            return -1;
        }
        self->year_of[month][day] = y;
        self->year_known[month][day] = 1;
    }
    *year = self->year_of[month][day];
    return 1;
}

/* ([^\W\d_]{3,5}\.?)\s+(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?\s (_SYSLOG)
 * at the start, then _syslog(): the wall time. 1, 0 (no stamp), -1. */
static int match_syslog(Scanner *self, const Line *L, double *wall, Py_ssize_t *end) {
    const unsigned char *s = L->s;
    Py_ssize_t j = 0;
    while (j < L->n && is_alpha(s[j])) j++;
    if (j < 3 || j > 5) return 0;
    Py_ssize_t token_end = j;
    if (j < L->n && s[j] == '.') token_end = ++j;
    Py_ssize_t k = skip_spaces(L, j);
    if (k == j) return 0;
    Py_ssize_t dd = skip_digits(L, k);
    if (dd == k || dd - k > 2 || dd >= L->n || s[dd] != ' ') return 0;
    Py_ssize_t t = dd + 1;
    if (!(two_digits(L, t) && t + 8 <= L->n && s[t + 2] == ':' && two_digits(L, t + 3) &&
          s[t + 5] == ':' && two_digits(L, t + 6))) {
        return 0;
    }
    Py_ssize_t e = t + 8;
    long long frac = 0;
    int frac_digits = 0;
    if (e + 1 < L->n && s[e] == '.' && is_digit(s[e + 1])) {
        e++;
        while (e < L->n && is_digit(s[e])) {
            if (frac_digits < 9) {
                frac = frac * 10 + (s[e] - '0');
                frac_digits++;
            }
            e++;
        }
    }
    if (e >= L->n || !is_space(s[e])) return 0;
    int month = month_number(self, s, token_end);
    if (month <= 0) return month;
    long day = digits_value(L, k, dd - k);
    long year;
    if (infer_year(self, month, day, &year) < 0) return -1;
    double base;
    int got = local_minute(self, year, month, day, digits_value(L, t, 2), digits_value(L, t + 3, 2),
                           &base);
    if (got <= 0) return got;
    *wall = base + ((double)digits_value(L, t + 6, 2) + fraction(frac, frac_digits));
    *end = e + 1;
    return 1;
}

/* envelope.parse for the stamps this loop knows: 1 (read), 0 (the Python path's), -1. */
static int read_envelope(Scanner *self, const Line *L, Env *E) {
    const unsigned char *s = L->s;
    E->host.n = -1;
    E->has_boot = 0;
    if (L->n <= 0) return 0;
    unsigned char first = s[0];
    int r;
    if (first == '[') {
        r = match_dmesg_boot(self, L, 0, &E->ts);
        E->clock = CLOCK_BOOT;
        return r;
    }
    if (is_digit(first)) {
        Iso t;
        if (match_iso(L, 0, &t)) {
            r = iso_wall(self, &t, &E->ts);
            if (r <= 0) return r; /* no wall time: the Python path reads what it is */
            E->clock = CLOCK_WALL;
            Py_ssize_t at;
            if (!t.comma && match_host_ident(L, t.end, &E->host, &at)) {
                r = match_dmesg_boot(self, L, at, &E->boot);
                if (r < 0) return -1;
                E->has_boot = r;
            }
            return 1;
        }
        E->clock = CLOCK_BOOT;
        return match_kmsg(L, &E->ts);
    }
    Py_ssize_t at;
    if (first >= 'a' && first <= 'z' && match_facility(L, &at)) {
        Iso t;
        if (!match_iso(L, at, &t)) return 0;
        E->clock = CLOCK_WALL;
        return iso_wall(self, &t, &E->ts);
    }
    if (!is_alpha(first)) return 0;
    size_t head = L->n < 32 ? (size_t)L->n : 32; /* text.find(":", 0, 32) > 0 */
    const unsigned char *colon = memchr(s, ':', head);
    if (colon == NULL || colon == s) return 0;
    r = match_syslog(self, L, &E->ts, &at);
    if (r <= 0) return r;
    E->clock = CLOCK_WALL;
    if (match_host_ident(L, at, &E->host, &at)) {
        /* at is past the ident now */
    }
    r = match_dmesg_boot(self, L, at, &E->boot);
    if (r < 0) return -1;
    E->has_boot = r;
    return 1;
}

/* ---- kernel records (kmsg.py) ------------------------------------------------------ */

enum { R_NONE, R_XID, R_SXID, R_OFF_BUS, R_GPU_AT, R_AER };

#define AER_MOST_LINES 40 /* kmsg._AER_FOLLOW_LINES */

/* What an AER record's following lines said (kmsg._read_aer's belongs). */
typedef struct {
    int n_bits; /* bit lines, in order: each bit and its "(First)" */
    unsigned char bit[AER_MOST_LINES], first[AER_MOST_LINES];
    int has_status;          /* a status line's error status (the last one's) */
    unsigned long status;
    char id[10];             /* its device id, lower case; "" without one */
    Py_ssize_t end;          /* where the record's last line ends (its newline +1) */
} AerBody;

typedef struct {
    int what;
    Pci pci;
    long long code, pid; /* -1: absent */
    Span process;
    Span rest;        /* what the detail is made of (stripped and squeezed) */
    long long index;  /* Xid 119's "from GPU<n> GSP", -1: none */
    Span uuid;
    int severity;     /* -1: absent, else SEV_* */
    /* an AER record: its device as written, its error type (stripped), the driver that
     * printed it (n < 0: none), and what its following lines said */
    Span dev, type, driver;
    const AerBody *aer;
} Record;

/* (?:\s+TAG\w+)? after a PCI address: where it ends (j when absent). */
static Py_ssize_t optional_tag(const Line *L, Py_ssize_t j, const char *tag) {
    Py_ssize_t p = skip_spaces(L, j);
    if (p == j || !starts(L, p, tag)) return j;
    p += (Py_ssize_t)strlen(tag);
    Py_ssize_t q = p;
    while (q < L->n && is_word(L->s[q])) q++;
    return q == p ? j : q;
}

/* \):\s*(?P<code>\d+)\b,?\s*(?P<rest>.*) at j, the tail of _XID and _SXID. */
static int code_and_rest(const Line *L, Py_ssize_t j, Span *code, Span *rest) {
    if (!starts(L, j, "):")) return 0;
    j = skip_spaces(L, j + 2);
    Py_ssize_t c = skip_digits(L, j);
    if (c == j || (c < L->n && is_word(L->s[c]))) return 0;
    code->at = j;
    code->n = c - j;
    if (c < L->n && L->s[c] == ',') c++;
    rest->at = skip_spaces(L, c);
    rest->n = L->n - rest->at;
    return 1;
}

/* _XID: NVRM: Xid \((?:PCI:)?(?P<pci>…)(?:\s+GPU-I:\w+)?(?:\s+GPU-CI:\w+)?\):… */
static int match_xid(const Line *L, Pci *pci, Span *code, Span *rest) {
    for (Py_ssize_t k = FIND(L, 0, "NVRM: Xid ("); k >= 0; k = FIND(L, k + 1, "NVRM: Xid (")) {
        Py_ssize_t j = k + 11;
        if (starts(L, j, "PCI:")) j += 4;
        j = read_pci(L, j, pci);
        if (j < 0) continue;
        j = optional_tag(L, j, "GPU-I:");
        j = optional_tag(L, j, "GPU-CI:");
        if (code_and_rest(L, j, code, rest)) return 1;
    }
    return 0;
}

/* _SXID: nvidia-nvswitch\d*: SXid \((?:PCI:)?(?P<pci>…)\):… */
static int match_sxid(const Line *L, Pci *pci, Span *code, Span *rest) {
    for (Py_ssize_t k = FIND(L, 0, "nvidia-nvswitch"); k >= 0;
         k = FIND(L, k + 1, "nvidia-nvswitch")) {
        Py_ssize_t j = skip_digits(L, k + 15);
        if (!starts(L, j, ": SXid (")) continue;
        j += 8;
        if (starts(L, j, "PCI:")) j += 4;
        j = read_pci(L, j, pci);
        if (j < 0) continue;
        if (code_and_rest(L, j, code, rest)) return 1;
    }
    return 0;
}

/* _PID_NAME.match(rest): pid='?(?P<pid>[^,']*)'?,\s*(?:name=(?P<name>[^,]*?),\s*)?
 * Where it ends, or -1 when it does not match. */
static Py_ssize_t match_pid_name(const Line *L, Py_ssize_t at, Span *pid, Span *name) {
    const unsigned char *s = L->s;
    if (!starts(L, at, "pid=")) return -1;
    Py_ssize_t j = at + 4;
    if (j < L->n && s[j] == '\'') j++;
    pid->at = j;
    while (j < L->n && s[j] != ',' && s[j] != '\'') j++;
    pid->n = j - pid->at;
    if (j < L->n && s[j] == '\'') j++;
    if (j >= L->n || s[j] != ',') return -1;
    j = skip_spaces(L, j + 1);
    name->n = -1;
    if (starts(L, j, "name=")) {
        const unsigned char *comma = memchr(s + j + 5, ',', (size_t)(L->n - j - 5));
        if (comma != NULL) {
            name->at = j + 5;
            name->n = comma - s - name->at;
            j = skip_spaces(L, comma - s + 1);
        }
    }
    return j;
}

/* _XID_RM_INDEX.search(rest): from GPU(?P<gpu>\d+) GSP; the index (whole, int32), -1. */
static long long xid_rm_index(const Line *L, Py_ssize_t from) {
    for (Py_ssize_t k = FIND(L, from, "from GPU"); k >= 0; k = FIND(L, k + 1, "from GPU")) {
        Py_ssize_t d = skip_digits(L, k + 8);
        if (d > k + 8 && starts(L, d, " GSP")) return whole(L->s + k + 8, d - k - 8, INT32_MOST);
    }
    return -1;
}

/* _GPU_AT: NVRM: GPU at (?:PCI:)?(?P<pci>…): (?P<uuid>GPU-[\w-]+) */
static int match_gpu_at(const Line *L, Pci *pci, Span *uuid) {
    for (Py_ssize_t k = FIND(L, 0, "NVRM: GPU at "); k >= 0; k = FIND(L, k + 1, "NVRM: GPU at ")) {
        Py_ssize_t j = k + 13;
        if (starts(L, j, "PCI:")) j += 4;
        j = read_pci(L, j, pci);
        if (j < 0 || !starts(L, j, ": GPU-")) continue;
        Py_ssize_t u = j + 6;
        while (u < L->n && (is_word(L->s[u]) || L->s[u] == '-')) u++;
        if (u == j + 6) continue;
        uuid->at = j + 2;
        uuid->n = u - uuid->at;
        return 1;
    }
    return 0;
}

/* _SERIAL: NVRM: GPU Board Serial Number: (?P<serial>\S+) */
static int match_serial(const Line *L, Span *serial) {
    static const char head[] = "NVRM: GPU Board Serial Number: ";
    Py_ssize_t m = (Py_ssize_t)sizeof head - 1;
    for (Py_ssize_t k = find(L, 0, head, m); k >= 0; k = find(L, k + 1, head, m)) {
        Py_ssize_t j = k + m;
        while (j < L->n && !is_space(L->s[j])) j++;
        if (j > k + m) {
            serial->at = k + m;
            serial->n = j - serial->at;
            return 1;
        }
    }
    return 0;
}

/* _OFF_BUS: NVRM: GPU (?P<pci>…): GPU has fallen off the bus */
static int match_off_bus(const Line *L, Pci *pci) {
    for (Py_ssize_t k = FIND(L, 0, "NVRM: GPU "); k >= 0; k = FIND(L, k + 1, "NVRM: GPU ")) {
        Py_ssize_t j = read_pci(L, k + 10, pci);
        if (j >= 0 && starts(L, j, ": GPU has fallen off the bus")) return 1;
    }
    return 0;
}

/* \bWORD\b, any case (_NONFATAL is \bnon-?fatal\b, _FATAL \bfatal\b), in s[at:]. */
static int has_word_ci(const Line *L, Py_ssize_t at, int nonfatal) {
    const unsigned char *s = L->s;
    for (Py_ssize_t i = at; i < L->n; i++) {
        if (i > 0 && is_word(s[i - 1])) continue;
        Py_ssize_t j = i;
        if (nonfatal) {
            if (j + 3 > L->n || lower(s[j]) != 'n' || lower(s[j + 1]) != 'o' ||
                lower(s[j + 2]) != 'n') {
                continue;
            }
            j += 3;
            if (j < L->n && s[j] == '-') j++;
        }
        if (j + 5 > L->n) continue;
        if (lower(s[j]) != 'f' || lower(s[j + 1]) != 'a' || lower(s[j + 2]) != 't' ||
            lower(s[j + 3]) != 'a' || lower(s[j + 4]) != 'l') {
            continue;
        }
        if (j + 5 < L->n && is_word(s[j + 5])) continue;
        return 1;
    }
    return 0;
}

static int read_aer_head(const Line *L, Record *R);

/* kmsg.read for the records this loop knows: 1 (read), 0 (the Python path's). */
static int read_record(const Line *L, Record *R) {
    R->code = R->pid = R->index = -1;
    R->process.n = R->rest.n = R->uuid.n = R->dev.n = R->type.n = R->driver.n = -1;
    R->severity = -1;
    R->aer = NULL;
    if (HAS(L, "NVRM")) {
        if (HAS(L, "Xid")) {
            Span code, rest, pid, name;
            if (!match_xid(L, &R->pci, &code, &rest)) return 0; /* an RM fault, or malformed */
            R->code = whole(L->s + code.at, code.n, INT64_MOST);
            if (R->code < 0) return 0; /* out of range: counted by the Python path */
            Py_ssize_t after = match_pid_name(L, rest.at, &pid, &name);
            if (after >= 0) {
                if (pid.n > 0) { /* isdecimal(): all digits, not "<unknown>" */
                    Py_ssize_t d = pid.at;
                    while (d < pid.at + pid.n && is_digit(L->s[d])) d++;
                    if (d == pid.at + pid.n) {
                        R->pid = whole(L->s + pid.at, pid.n, INT64_MOST);
                        if (R->pid < 0) return 0;
                    }
                }
                if (name.n > 0 && !(name.n == 9 && memcmp(L->s + name.at, "<unknown>", 9) == 0)) {
                    R->process = name;
                }
                rest.at = after;
                rest.n = L->n - after;
            }
            R->rest = rest;
            if (R->code == 119) R->index = xid_rm_index(L, rest.at);
            R->what = R_XID;
            return 1;
        }
        if (match_gpu_at(L, &R->pci, &R->uuid)) {
            R->what = R_GPU_AT;
            return 1;
        }
        Span serial;
        if (match_serial(L, &serial)) return 0; /* a serial line on its own */
        if (match_off_bus(L, &R->pci)) {
            R->what = R_OFF_BUS;
            return 1;
        }
        return 0;
    }
    if (HAS(L, "SXid")) {
        Span code, rest;
        if (!match_sxid(L, &R->pci, &code, &rest)) return 0;
        R->code = whole(L->s + code.at, code.n, INT64_MOST);
        if (R->code < 0) return 0;
        R->rest = rest;
        R->severity = has_word_ci(L, rest.at, 1) ? SEV_NONFATAL
                      : has_word_ci(L, rest.at, 0) ? SEV_FATAL
                                                   : -1;
        R->what = R_SXID;
        return 1;
    }
    if (HAS(L, "PCIe Bus Error")) return read_aer_head(L, R);
    return 0;
}

/* ---- PCIe AER (kmsg._read_aer) ------------------------------------------------------ */

static int ascii_line(const char *p, Py_ssize_t n, int nul_ok, Line *L);
static int grow_scratch(Scanner *self, Py_ssize_t need);

/* kmsg._DEV, [0-9a-fA-F]{4,5}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7], at at (five hex
 * digits where there are five, as re tries them first): where it ends, or -1. */
static Py_ssize_t dev_at(const Line *L, Py_ssize_t at) {
    const unsigned char *s = L->s;
    Py_ssize_t k = 0;
    while (k < 5 && at + k < L->n && is_hex(s[at + k])) k++;
    for (Py_ssize_t d = k; d >= 4; d--) {
        Py_ssize_t j = at + d;
        if (j + 8 <= L->n && s[j] == ':' && is_hex(s[j + 1]) && is_hex(s[j + 2]) &&
            s[j + 3] == ':' && is_hex(s[j + 4]) && is_hex(s[j + 5]) && s[j + 6] == '.' &&
            s[j + 7] >= '0' && s[j + 7] <= '7') {
            return j + 8;
        }
    }
    return -1;
}

/* The leftmost place from ``from`` where _DEV matches: its start (its end in *end),
 * or -1. */
static Py_ssize_t next_dev(const Line *L, Py_ssize_t from, Py_ssize_t *end) {
    for (Py_ssize_t p = from; p + 12 <= L->n; p++) {
        if (!is_hex(L->s[p])) continue;
        Py_ssize_t e = dev_at(L, p);
        if (e >= 0) {
            *end = e;
            return p;
        }
    }
    return -1;
}

static Span strip(const Line *L, Py_ssize_t a, Py_ssize_t b) {
    while (a < b && is_space(L->s[a])) a++;
    while (b > a && is_space(L->s[b - 1])) b--;
    Span out = {a, b - a};
    return out;
}

/* Whether lit (lower case) is in L[a:b], ignoring case. */
static int has_ci(const Line *L, Py_ssize_t a, Py_ssize_t b, const char *lit) {
    Py_ssize_t m = (Py_ssize_t)strlen(lit);
    for (Py_ssize_t i = a; i + m <= b; i++) {
        Py_ssize_t k = 0;
        while (k < m && lower(L->s[i + k]) == (unsigned char)lit[k]) k++;
        if (k == m) return 1;
    }
    return 0;
}

static inline int is_driver_char(unsigned char c) { return is_word(c) || c == '.' || c == '-'; }

/* _AER_HEAD and _severity_of_aer on the line, and _DRIVER_DEV's driver: 1, or 0 where
 * the Python path must read it (no match: "malformed aer"; more than one "PCIe Bus
 * Error"). */
static int read_aer_head(const Line *L, Record *R) {
    const unsigned char *s = L->s;
    Py_ssize_t q = FIND(L, 0, "PCIe Bus Error");
    if (q < 0 || FIND(L, q + 1, "PCIe Bus Error") >= 0) return 0;
    if (!starts(L, q, "PCIe Bus Error: severity=")) return 0;
    /* _DEV: (?:AER: )? before it */
    Py_ssize_t e;
    if (q >= 7 && memcmp(s + q - 7, ": AER: ", 7) == 0) {
        e = q - 7;
    } else if (q >= 2 && s[q - 2] == ':' && s[q - 1] == ' ') {
        e = q - 2;
    } else {
        return 0;
    }
    Py_ssize_t d;
    if (e >= 13 && dev_at(L, e - 13) == e) {
        d = e - 13;
    } else if (e >= 12 && dev_at(L, e - 12) == e) {
        d = e - 12;
    } else {
        return 0;
    }
    if (read_pci(L, d, &R->pci) != e) return 0;
    R->dev.at = d;
    R->dev.n = e - d;
    /* severity=(?P<sev>[^,]+), type=(?P<type>[^,]+) */
    Py_ssize_t a = q + (Py_ssize_t)strlen("PCIe Bus Error: severity="), b = a;
    while (b < L->n && s[b] != ',') b++;
    if (b == a || !starts(L, b, ", type=")) return 0;
    Py_ssize_t t = b + 7, u = t;
    while (u < L->n && s[u] != ',') u++;
    if (u == t) return 0;
    R->type = strip(L, t, u);
    Span sev = strip(L, a, b);
    if ((sev.n == 9 && has_ci(L, sev.at, sev.at + 9, "corrected")) ||
        (sev.n == 11 && has_ci(L, sev.at, sev.at + 11, "correctable"))) {
        R->severity = SEV_CORRECTED;
    } else if (has_ci(L, sev.at, sev.at + sev.n, "non-fatal") ||
               has_ci(L, sev.at, sev.at + sev.n, "nonfatal")) {
        R->severity = SEV_NONFATAL;
    } else if (has_ci(L, sev.at, sev.at + sev.n, "fatal")) {
        R->severity = SEV_FATAL;
    } else {
        return 0;
    }
    /* _DRIVER_DEV: (?<![\w.-])(?P<drv>[\w.-]+) _DEV: , the leftmost */
    R->driver.n = -1;
    for (Py_ssize_t p = 0; p < L->n; p++) {
        if (!is_driver_char(s[p]) || (p > 0 && is_driver_char(s[p - 1]))) continue;
        Py_ssize_t r = p;
        while (r < L->n && is_driver_char(s[r])) r++;
        Py_ssize_t de;
        if (r < L->n && s[r] == ' ' && (de = dev_at(L, r + 1)) >= 0 && de < L->n &&
            s[de] == ':') {
            R->driver.at = p;
            R->driver.n = r - p;
            break;
        }
        p = r; /* the next word starts after this one */
    }
    R->what = R_AER;
    return 1;
}

/* _DEV's tail ":(?: AER:)?\s+" then ``body`` at the end e of a device: where the body
 * starts in each reading re would try (with " AER:", then without), -1 for none. */
static Py_ssize_t aer_tail(const Line *L, Py_ssize_t e, int with_tag) {
    if (e >= L->n || L->s[e] != ':') return -1;
    Py_ssize_t j = e + 1;
    if (with_tag) {
        if (!starts(L, j, " AER:")) return -1;
        j += 5;
    }
    if (j >= L->n || !is_space(L->s[j])) return -1;
    return skip_spaces(L, j);
}

/* \[\s*(?P<bit>\d+)\]\s+(?P<name>.*) at j: 1 (the bit, -1 past any register, and its
 * "(First)"), or 0. */
static int aer_bit_body(const Line *L, Py_ssize_t j, int *bit, int *first) {
    if (j >= L->n || L->s[j] != '[') return 0;
    Py_ssize_t a = skip_spaces(L, j + 1), b = skip_digits(L, a);
    if (b == a || b >= L->n || L->s[b] != ']') return 0;
    Py_ssize_t c = b + 1;
    if (c >= L->n || !is_space(L->s[c])) return 0;
    while (a < b - 1 && L->s[a] == '0') a++;
    *bit = b - a > 2 ? -1 : (int)digits_value(L, a, b - a);
    Span label = strip(L, skip_spaces(L, c), L->n);
    *first = label.n >= 7 && memcmp(L->s + label.at + label.n - 7, "(First)", 7) == 0;
    return 1;
}

/* device \[(?P<id>hex{4}:hex{4})\] error status/mask=(?P<status>hex+)/ at j: 1 (the id
 * at *id, the status's digits from *digits, leading zeros skipped, to *digits_end), 0. */
static int aer_status_body(const Line *L, Py_ssize_t j, Py_ssize_t *id, Py_ssize_t *digits,
                           Py_ssize_t *digits_end) {
    const unsigned char *s = L->s;
    if (!starts(L, j, "device [")) return 0;
    Py_ssize_t k = j + 8;
    if (k + 9 > L->n) return 0;
    for (int i = 0; i < 9; i++) {
        if (i == 4 ? s[k + i] != ':' : !is_hex(s[k + i])) return 0;
    }
    if (!starts(L, k + 9, "] error status/mask=")) return 0;
    Py_ssize_t h = k + 9 + 20, x = h;
    while (x < L->n && is_hex(s[x])) x++;
    if (x == h || x >= L->n || s[x] != '/') return 0;
    while (h < x - 1 && s[h] == '0') h++;
    *id = k;
    *digits = h;
    *digits_end = x;
    return 1;
}

enum { T_BIT, T_STATUS, T_TLP };

/* One of the tails of _AER_BIT, _AER_STATUS, _AER_TLP after a device ending at e, in
 * either reading of ":(?: AER:)?\s+": where its body starts, or -1. */
static Py_ssize_t aer_tail_body(const Line *N, Py_ssize_t e, int which, int *bit, int *first,
                                Py_ssize_t *id, Py_ssize_t *digits, Py_ssize_t *digits_end) {
    for (int tag = 1; tag >= 0; tag--) {
        Py_ssize_t j = aer_tail(N, e, tag);
        if (j < 0) continue;
        if (which == T_BIT ? aer_bit_body(N, j, bit, first)
            : which == T_STATUS ? aer_status_body(N, j, id, digits, digits_end)
                                : starts(N, j, "TLP Header:")) {
            return j;
        }
    }
    return -1;
}

/* Whether a following line belongs to the record of device R->dev (kmsg._read_aer's
 * belongs, which notes what it says in B): 1, 0, -1 the Python path must read it.
 * Each pattern is searched as re does: its first match in the line, whose device
 * then is the record's or not. */
static int aer_line(const Line *N, const Line *H, const Record *R, int reg, AerBody *B) {
    /* _KMSG_DICT: ^ [A-Z_]+= */
    Py_ssize_t k = 1;
    while (k < N->n && ((N->s[k] >= 'A' && N->s[k] <= 'Z') || N->s[k] == '_')) k++;
    int dict = N->n > 0 && N->s[0] == ' ' && k > 1 && k < N->n && N->s[k] == '=';
    for (int which = T_BIT; which <= T_TLP; which++) {
        if (which == T_TLP && dict) return 1;
        int bit = -1, first = 0;
        Py_ssize_t id = 0, digits = 0, digits_end = 0, e = 0;
        Py_ssize_t p = next_dev(N, 0, &e);
        while (p >= 0 &&
               aer_tail_body(N, e, which, &bit, &first, &id, &digits, &digits_end) < 0) {
            p = next_dev(N, e, &e);
        }
        if (p < 0) continue; /* no match: the next pattern */
        int same = e - p == R->dev.n;
        for (Py_ssize_t i = 0; same && i < R->dev.n; i++) {
            same = lower(N->s[p + i]) == lower(H->s[R->dev.at + i]);
        }
        if (!same) {
            if (which == T_TLP) return 0;
            continue; /* another device's: the next pattern */
        }
        if (which == T_BIT) {
            if (bit < 0 || bit >= 32 || cfg.aer_names[reg][bit].text == NULL) return -1;
            B->bit[B->n_bits] = (unsigned char)bit;
            B->first[B->n_bits] = (unsigned char)first;
            B->n_bits++;
        } else if (which == T_STATUS) {
            if (digits_end - digits > 8) return -1; /* past 32 bits: the Python path's */
            unsigned long status = 0;
            for (Py_ssize_t i = digits; i < digits_end; i++) {
                status = status * 16 + (unsigned long)hex_value(N->s[i]);
            }
            for (int i = 0; i < 9; i++) B->id[i] = (char)lower(N->s[id + i]);
            B->id[9] = 0;
            B->has_status = 1;
            B->status = status;
        }
        return 1;
    }
    return 0;
}

/* The lines after an AER record's first that belong to it (kmsg._continuation, with
 * the same peeks: 4 lines, then 16, then 40, each asked only while all so far belong;
 * fewer than asked in a chunk that is not the last is the Python path's NeedMore).
 * 1 with B filled in, 0: the Python path reads the record. */
static int aer_body(const char *buf, Py_ssize_t end, Py_ssize_t limit, int eof,
                    const Line *H, const Record *R, AerBody *B) {
    int reg = R->severity == SEV_CORRECTED ? 0 : 1;
    B->n_bits = 0;
    B->has_status = 0;
    B->id[0] = 0;
    Py_ssize_t first_line = end + 1 < limit ? end + 1 : limit;
    Py_ssize_t at = first_line; /* where the next line to read starts */
    int consumed = 0, want = 4, seen = 0;
    for (;;) {
        /* the lines peek(want) gives: at most want, before limit */
        Py_ssize_t p = at;
        int avail = seen;
        while (avail < want && p < limit) {
            const char *nl = memchr(buf + p, '\n', (size_t)(limit - p));
            p = nl == NULL ? limit : nl - buf + 1;
            avail++;
        }
        if (avail < want && !eof) return 0;
        seen = avail;
        while (consumed < avail) {
            if (consumed >= AER_MOST_LINES) goto done;
            const char *nl = memchr(buf + at, '\n', (size_t)(limit - at));
            Py_ssize_t e = nl == NULL ? limit : nl - buf;
            Line N;
            if (!ascii_line(buf + at, e - at, 1, &N)) return 0;
            int r = aer_line(&N, H, R, reg, B);
            if (r < 0) return 0;
            if (r == 0) goto done;
            consumed++;
            at = nl == NULL ? limit : e + 1;
        }
        if (avail < want || want >= AER_MOST_LINES) goto done;
        want = want * 4 < AER_MOST_LINES ? want * 4 : AER_MOST_LINES;
    }
done:
    B->end = consumed ? at : -1;
    return 1;
}

/* The record's detail, kmsg._read_aer's: "<type>: <names>[; device <id>]", into the
 * scratch buffer (grown to hold it): its length, or -1 with an error set. */
static Py_ssize_t aer_detail(Scanner *self, const Line *L, const Record *R) {
    const AerBody *B = R->aer;
    int reg = R->severity == SEV_CORRECTED ? 0 : 1;
    Py_ssize_t need = R->type.n + 64;
    for (int i = 0; i < B->n_bits; i++) need += cfg.aer_names[reg][B->bit[i]].n + 10;
    for (int b = 0; b < 32; b++) need += cfg.aer_names[reg][b].n + 10;
    if (grow_scratch(self, need) < 0) return -1;
    unsigned char *out = self->scratch;
    Py_ssize_t n = 0;
#define PUT_BYTES(p, m)                      \
    do {                                     \
        memcpy(out + n, (p), (size_t)(m));   \
        n += (m);                            \
    } while (0)
#define PUT_LIT(lit) PUT_BYTES(lit, (Py_ssize_t)sizeof(lit) - 1)
    PUT_BYTES(L->s + R->type.at, R->type.n);
    PUT_LIT(": ");
    Py_ssize_t names = n;
    if (B->n_bits) {
        for (int i = 0; i < B->n_bits; i++) {
            const Word *w = &cfg.aer_names[reg][B->bit[i]];
            if (i) PUT_LIT(", ");
            PUT_BYTES(w->text, w->n);
            if (B->first[i]) PUT_LIT(" (First)");
        }
    } else if (B->has_status && B->status) {
        for (int b = 0; b < 32; b++) {
            if (!(B->status >> b & 1)) continue;
            if (n > names) PUT_LIT(", ");
            const Word *w = &cfg.aer_names[reg][b];
            if (w->text != NULL) {
                PUT_BYTES(w->text, w->n);
            } else {
                n += sprintf((char *)out + n, "bit %d", b);
            }
        }
    }
    if (n == names) PUT_LIT("no error bits");
    if (B->id[0]) {
        PUT_LIT("; device ");
        PUT_BYTES(B->id, 9);
    }
#undef PUT_LIT
#undef PUT_BYTES
    return n;
}

/* ---- the batch's string table ---------------------------------------------------- */

/* Eight bytes a step, one multiply each (FNV-1a took one a byte, in one chain: a
 * quarter of the sample loop's time, which hashes every line's head), then murmur3's
 * finalizer, so that the low bits that pick a slot depend on every byte. */
static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, (size_t)(n - i));
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void table_clear(Table *t) {
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        Slot *slot = t->slots[i];
        if (slot != NULL) {
            Py_DECREF(slot->str);
            fw_free(slot);
        }
    }
    fw_free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}

static int table_grow(Table *t) {
    Py_ssize_t cap = t->cap ? t->cap * 2 : 64;
    Slot **slots = fw_calloc((size_t)cap, sizeof(Slot *));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        Slot *slot = t->slots[i];
        if (slot == NULL) continue;
        Py_ssize_t j = (Py_ssize_t)(slot->hash & (uint64_t)(cap - 1));
        while (slots[j] != NULL) j = (j + 1) & (cap - 1);
        slots[j] = slot;
    }
    fw_free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* The slot of these bytes, made (with its str) when new; NULL on error. ``given`` is the
 * str they are the UTF-8 of, if there is one. */
static Slot *table_slot(Table *t, const unsigned char *p, Py_ssize_t n, PyObject *given) {
    if ((t->used + 1) * 2 > t->cap && table_grow(t) < 0) return NULL;
    uint64_t h = hash_bytes(p, n);
    Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)(t->cap - 1));
    for (Slot *slot; (slot = t->slots[j]) != NULL; j = (j + 1) & (t->cap - 1)) {
        if (slot->hash == h && slot->n == n && memcmp(slot->key, p, (size_t)n) == 0) return slot;
    }
    PyObject *str = given;
    if (str != NULL) {
        Py_INCREF(str);
    } else if ((str = PyUnicode_FromStringAndSize((const char *)p, n)) == NULL) {
        return NULL;
    }
    Slot *slot = fw_alloc(sizeof(Slot) + (size_t)n);
    if (slot == NULL) {
        Py_DECREF(str);
        PyErr_NoMemory();
        return NULL;
    }
    slot->hash = h;
    slot->n = n;
    slot->id = -1;
    slot->str = str;
    memcpy(slot->key, p, (size_t)n);
    t->slots[j] = slot;
    t->used++;
    return slot;
}

/* ---- one run: FileContext's state, as the Python path would leave it -------------- */

#define N_ANCHORS 8

typedef struct {
    PyObject *ctx, *builder, *identities, *node, *name, *last_boot_ts, *boot_anchors,
        *file_nodes;
    PyObject *by_node; /* identities._by_node where identities is an Identities, else NULL */
    int node_is_file_name;
    int synced;         /* the builder's columns are taken up for this batch */
    Py_ssize_t row;     /* the next row written in place */
    Py_ssize_t pending; /* rows written and not yet told */
    int has_last_boot;  /* the node's last boot-clock stamp (FileContext.saw_boot_clock) */
    double last_boot;
    int last_boot_dirty;
    PyObject *anchor_node[N_ANCHORS]; /* boot anchors seen in this run, told at its end */
    double anchor[N_ANCHORS];
    int n_anchors;
    Py_ssize_t blanks; /* dcgm samples of DCGM's blank, not yet told */
} Run;

static void release_views(Scanner *self) {
    if (self->have_views) {
        for (int f = 0; f < N_FIELDS; f++) PyBuffer_Release(&self->views[f]);
        self->have_views = 0;
    }
}

/* The builder's columns for this batch; a new batch starts a new string table. */
static int sync_batch(Scanner *self, Run *run) {
    run->row = PyObject_Length(run->builder);
    if (run->row < 0) return -1;
    /* the rows this loop may write before the batch is full (at least one) */
    PyObject *room = PyLong_FromSsize_t(run->row < cfg.batch_size ? cfg.batch_size - run->row : 1);
    if (room == NULL) return -1;
    PyObject *dense = PyObject_CallMethodOneArg(run->builder, s_columns_in_place, room);
    Py_DECREF(room);
    if (dense == NULL) return -1;
    if (!PyDict_Check(dense)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "columns_in_place: not a dict");
        Py_DECREF(dense);
        return -1;
    }
    run->synced = 1;
    if (dense == self->dense) {
        Py_DECREF(dense);
        return 0;
    }
    release_views(self);
    table_clear(&self->strings);
    self->generation++;
    Py_XSETREF(self->dense, dense);
    self->capacity = PY_SSIZE_T_MAX;
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *column = PyDict_GetItemString(dense, FIELD_NAMES[f]);
        int bad = column == NULL ||
                  PyObject_GetBuffer(column, &self->views[f], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS |
                                                                  PyBUF_FORMAT) < 0;
        if (!bad && self->views[f].itemsize != FIELD_SIZES[f]) {
            PyBuffer_Release(&self->views[f]);
            bad = 1;
        }
        if (bad) {
            for (int g = 0; g < f; g++) PyBuffer_Release(&self->views[g]);
            Py_CLEAR(self->dense);
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError, "column %s: missing or of another type",
                             FIELD_NAMES[f]);
            }
            return -1;
        }
        Py_ssize_t len = self->views[f].len / FIELD_SIZES[f];
        if (len < self->capacity) self->capacity = len;
    }
    self->have_views = 1;
    run->synced = 1;
    return 0;
}

static int32_t id_of(PyObject *got) {
    if (got == NULL) return -2;
    long id = PyLong_AsLong(got);
    Py_DECREF(got);
    if (id == -1 && PyErr_Occurred()) return -2;
    return (int32_t)id;
}

/* The id of a slot's string in the batch's string table (BatchBuilder.intern, once). */
static int32_t slot_id(Run *run, Slot *slot) {
    if (slot->id < 0) {
        int32_t id = id_of(PyObject_CallMethodOneArg(run->builder, s_intern, slot->str));
        if (id < 0) return -2;
        slot->id = id;
    }
    return slot->id;
}

static Slot *bytes_slot(Scanner *self, const unsigned char *p, Py_ssize_t n) {
    return table_slot(&self->strings, p, n, NULL);
}

/* The id of a str the file's state holds (node, file, uuid, serial); -2 on error. */
static int32_t str_id(Scanner *self, Run *run, PyObject *str) {
    if (!PyUnicode_Check(str)) {
        PyErr_SetString(PyExc_TypeError, "a string field that is no str");
        return -2;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(str, &n);
    if (p == NULL) { /* a lone surrogate (an undecodable file name): no bytes to key by */
        PyErr_Clear();
        return id_of(PyObject_CallMethodOneArg(run->builder, s_intern, str));
    }
    Slot *slot = table_slot(&self->strings, (const unsigned char *)p, n, str);
    return slot == NULL ? -2 : slot_id(run, slot);
}

static int set_float(PyObject *dict, PyObject *key, double value) {
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL) return -1;
    int r = PyDict_SetItem(dict, key, v);
    Py_DECREF(v);
    return r;
}

static int tell_anchors(Run *run) {
    int r = 0;
    for (int i = 0; i < run->n_anchors; i++) {
        if (r == 0) r = set_float(run->boot_anchors, run->anchor_node[i], run->anchor[i]);
        Py_CLEAR(run->anchor_node[i]);
    }
    run->n_anchors = 0;
    return r;
}

/* Tell Python what the run did so far: the clocks learned, the rows written
 * (FileContext.added_in_place counts them and seals a full batch); then take up the
 * batch again. */
static int flush(Scanner *self, Run *run) {
    if (run->last_boot_dirty) {
        if (set_float(run->last_boot_ts, run->node, run->last_boot) < 0) return -1;
        run->last_boot_dirty = 0;
    }
    if (tell_anchors(run) < 0) return -1;
    if (run->blanks > 0) {
        PyObject *n = PyLong_FromSsize_t(run->blanks);
        if (n == NULL) return -1;
        PyObject *got = PyObject_CallMethodOneArg(self->hooks, s_blank_samples, n);
        Py_DECREF(n);
        if (got == NULL) return -1;
        Py_DECREF(got);
        run->blanks = 0;
    }
    if (run->pending == 0) return 0;
    PyObject *rows = PyLong_FromSsize_t(run->pending);
    if (rows == NULL) return -1;
    PyObject *done = PyObject_CallMethodOneArg(run->ctx, s_added_in_place, rows);
    Py_DECREF(rows);
    if (done == NULL) return -1;
    Py_DECREF(done);
    run->pending = 0;
    run->synced = 0; /* the batch may be sealed: take it up again before the next row */
    return 0;
}

/* A wall-clock line that carries the kernel's stamp too: its node's boot anchor
 * (LineStream._place_in_time), kept in the order first seen until the run's end. */
static int note_anchor(Run *run, PyObject *node, double value) {
    for (int i = 0; i < run->n_anchors; i++) {
        if (run->anchor_node[i] == node) {
            run->anchor[i] = value;
            return 0;
        }
    }
    if (run->n_anchors == N_ANCHORS && tell_anchors(run) < 0) return -1;
    Py_INCREF(node);
    run->anchor_node[run->n_anchors] = node;
    run->anchor[run->n_anchors++] = value;
    return 0;
}

/* _SPACES.sub(" ", rest.strip()) into the scratch buffer: its length. */
static Py_ssize_t squeeze(Scanner *self, const Line *L, Span rest) {
    Py_ssize_t a = rest.at, b = rest.at + rest.n;
    while (a < b && is_space(L->s[a])) a++;
    while (b > a && is_space(L->s[b - 1])) b--;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = a; i < b;) {
        if (is_space(L->s[i]) && i + 1 < b && is_space(L->s[i + 1])) {
            while (i < b && is_space(L->s[i])) i++;
            self->scratch[n++] = ' ';
        } else {
            self->scratch[n++] = L->s[i++];
        }
    }
    return n;
}

/* Identities.lookup(node, pci): a new reference (Py_None: nothing known), NULL on error. */
static PyObject *lookup(Run *run, PyObject *node, PyObject *pci) {
    if (run->by_node == NULL) {
        return PyObject_CallMethodObjArgs(run->identities, s_lookup, node, pci, NULL);
    }
    PyObject *slots = PyDict_GetItemWithError(run->by_node, node);
    PyObject *known = NULL;
    if (slots != NULL) {
        if (!PyDict_Check(slots)) {
            return PyObject_CallMethodObjArgs(run->identities, s_lookup, node, pci, NULL);
        }
        known = PyDict_GetItemWithError(slots, pci);
    }
    if (known == NULL) {
        if (PyErr_Occurred()) return NULL;
        known = Py_None;
    }
    Py_INCREF(known);
    return known;
}

/* FileContext.emit then BatchBuilder.add, for one record: 0, -1 on error. ``uuid`` and
 * ``serial`` are the record's own (gpu_identity), else NULL. Strings are interned in
 * the order BatchBuilder.add meets them in the event's dict (node, pci, the record's
 * fields, what the identity filled in, file), so that the string tables are the same;
 * a GPU index no column holds stops the record where add raises, after the strings
 * before it. */
static int emit(Scanner *self, Run *run, const Line *L, const Record *R, const Env *E,
                PyObject *node, Slot *pci, Slot *uuid, Slot *serial, long long line) {
    if (run->node_is_file_name) {
        int same = node == run->node ? 1 : PyObject_RichCompareBool(node, run->node, Py_EQ);
        if (same < 0) return -1;
        if (same && PyDict_SetDefault(run->file_nodes, node, run->name) == NULL) return -1;
    }
    PyObject *known = lookup(run, node, pci->str);
    if (known == NULL) return -1;
    PyObject *k_uuid = NULL, *k_serial = NULL, *k_gpu = NULL;
    int ok = -1;
    int has_gpu = 0;
    long long gpu = -1;
    int32_t file_id, node_id, pci_id, uuid_id = -1, serial_id = -1, process_id = -1,
                                      detail_id = -1;
    if (known != Py_None && ((k_uuid = get(known, s_uuid)) == NULL ||
                             (k_serial = get(known, s_serial)) == NULL ||
                             (k_gpu = get(known, s_gpu)) == NULL)) {
        goto done;
    }
    if (!run->synced || run->row >= self->capacity) {
        PyErr_SetString(PyExc_RuntimeError, "no room left in the columns given");
        goto done;
    }
    if ((node_id = str_id(self, run, node)) == -2) goto done;
    if ((pci_id = slot_id(run, pci)) == -2) goto done;
    if (uuid != NULL && (uuid_id = slot_id(run, uuid)) == -2) goto done;
    if (serial != NULL && (serial_id = slot_id(run, serial)) == -2) goto done;
    if (R->process.n >= 0) {
        Slot *s = bytes_slot(self, L->s + R->process.at, R->process.n);
        if (s == NULL || (process_id = slot_id(run, s)) == -2) goto done;
    }
    if (R->what == R_XID || R->what == R_SXID) {
        Py_ssize_t n = squeeze(self, L, R->rest);
        if (n > 0) { /* an empty detail is none */
            Slot *s = bytes_slot(self, self->scratch, n);
            if (s == NULL || (detail_id = slot_id(run, s)) == -2) goto done;
        }
    } else if (R->what == R_AER) {
        Py_ssize_t n = aer_detail(self, L, R);
        if (n < 0) goto done;
        Slot *s = bytes_slot(self, self->scratch, n);
        if (s == NULL || (detail_id = slot_id(run, s)) == -2) goto done;
    } else if (R->what == R_OFF_BUS) {
        static const char fallen[] = "fallen off the bus";
        Slot *s = bytes_slot(self, (const unsigned char *)fallen, (Py_ssize_t)sizeof fallen - 1);
        if (s == NULL || (detail_id = slot_id(run, s)) == -2) goto done;
    }
    if (uuid == NULL && k_uuid != NULL && k_uuid != Py_None &&
        (uuid_id = str_id(self, run, k_uuid)) == -2) {
        goto done;
    }
    if (serial == NULL && k_serial != NULL && k_serial != Py_None &&
        (serial_id = str_id(self, run, k_serial)) == -2) {
        goto done;
    }
    if (k_gpu != NULL && k_gpu != Py_None) {
        if (!PyLong_Check(k_gpu)) {
            PyErr_SetString(PyExc_TypeError, "a GPU index that is no int");
            goto done;
        }
        int overflow;
        gpu = PyLong_AsLongLongAndOverflow(k_gpu, &overflow);
        if (gpu == -1 && PyErr_Occurred()) goto done;
        if (overflow || gpu < -2147483648LL || gpu > INT32_MOST) {
            /* BatchBuilder.add refuses it: the record is counted, not emitted */
            PyObject *got = PyObject_CallMethodNoArgs(self->hooks, s_out_of_range);
            if (got == NULL) goto done;
            Py_DECREF(got);
            ok = 0;
            goto done;
        }
        has_gpu = 1;
    }
    if ((file_id = str_id(self, run, run->name)) == -2) goto done;
    Py_ssize_t row = run->row;
#define PUT(f, type, value) (((type *)self->views[f].buf)[row] = (type)(value))
    PUT(F_KIND, int8_t,
        cfg.kind[R->what == R_XID      ? K_XID
                 : R->what == R_SXID   ? K_SXID
                 : R->what == R_GPU_AT ? K_GPU_IDENTITY
                 : R->what == R_AER    ? K_AER
                                       : K_GPU_LOST]);
    if (E->ts >= cfg.earliest && E->ts <= cfg.latest) { /* Envelope.event: a time a clock shows */
        PUT(F_TS, double, E->ts);
        PUT(F_CLOCK, int8_t, cfg.clock[E->clock]);
    } else {
        PUT(F_CLOCK, int8_t, cfg.clock[CLOCK_NONE]);
    }
    PUT(F_SOURCE, int8_t, cfg.source);
    PUT(F_FILE, int32_t, file_id);
    PUT(F_LINE, int64_t, line);
    PUT(F_NODE, int32_t, node_id);
    PUT(F_PCI, int32_t, pci_id);
    if (has_gpu) PUT(F_GPU, int32_t, gpu);
    if (uuid_id >= 0) PUT(F_UUID, int32_t, uuid_id);
    if (serial_id >= 0) PUT(F_SERIAL, int32_t, serial_id);
    if (R->code >= 0) PUT(F_CODE, int64_t, R->code);
    if (R->severity >= 0) PUT(F_SEVERITY, int8_t, cfg.severity[R->severity]);
    if (R->pid >= 0) PUT(F_PID, int64_t, R->pid);
    if (process_id >= 0) PUT(F_PROCESS, int32_t, process_id);
    if (detail_id >= 0) PUT(F_DETAIL, int32_t, detail_id);
#undef PUT
    run->row++;
    run->pending++;
    ok = 0;
done:
    Py_XDECREF(k_uuid);
    Py_XDECREF(k_serial);
    Py_XDECREF(k_gpu);
    Py_DECREF(known);
    if (ok == 0 && run->row >= cfg.batch_size) ok = flush(self, run); /* a full batch: sealed */
    return ok;
}

static int call_hook(PyObject *hooks, PyObject *name, PyObject *a, PyObject *b, PyObject *c,
                     PyObject *d) {
    PyObject *got = PyObject_CallMethodObjArgs(hooks, name, a, b, c, d, NULL);
    if (got == NULL) return -1;
    Py_DECREF(got);
    return 0;
}

/* The newlines in buf[from:to]: every byte of a file passes here once. With SSE2 (every
 * x86-64), sixteen bytes a step, each lane counting its newlines for up to 255 steps
 * before the lanes are summed: twice as fast as a memchr per line. */
static Py_ssize_t count_newlines(const char *buf, Py_ssize_t from, Py_ssize_t to) {
    Py_ssize_t n = 0;
    const char *p = buf + from, *end = buf + to;
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (end - p >= 16) {
        __m128i lanes = zero;
        for (int k = 0; k < 255 && end - p >= 16; k++, p += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            lanes = _mm_sub_epi8(lanes, _mm_cmpeq_epi8(v, newline)); /* a match is -1 */
        }
        __m128i sums = _mm_sad_epu8(lanes, zero); /* two sums of eight lanes */
        n += _mm_cvtsi128_si32(sums) + _mm_cvtsi128_si32(_mm_srli_si128(sums, 8));
    }
#endif
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* A line as the Python path decodes it, when that is the same bytes: ASCII, without its
 * trailing carriage returns. ``nul_ok``: a NUL byte is a character (a peeked line). */
static int ascii_line(const char *p, Py_ssize_t n, int nul_ok, Line *L) {
    /* eight bytes a step: none has its high bit set, and (unless a NUL is a character)
     * none is zero; the rest one by one */
    const uint64_t high = 0x8080808080808080ULL, ones = 0x0101010101010101ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if ((w & high) || (!nul_ok && ((w - ones) & ~w & high))) return 0;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80 || (c == 0 && !nul_ok)) return 0;
    }
    while (n > 0 && p[n - 1] == '\r') n--;
    L->s = (const unsigned char *)p;
    L->n = n;
    return 1;
}


static void run_clear(Run *run) {
    Py_CLEAR(run->builder);
    Py_CLEAR(run->identities);
    Py_CLEAR(run->by_node);
    Py_CLEAR(run->node);
    Py_CLEAR(run->name);
    Py_CLEAR(run->last_boot_ts);
    Py_CLEAR(run->boot_anchors);
    Py_CLEAR(run->file_nodes);
    for (int i = 0; i < run->n_anchors; i++) Py_CLEAR(run->anchor_node[i]);
    run->n_anchors = 0;
}

static int run_start(Scanner *self, Run *run) {
    run->ctx = self->ctx;
    PyObject *stats = NULL, *flag = NULL;
    if ((run->builder = get(self->ctx, s_builder)) == NULL ||
        (run->identities = get(self->ctx, s_identities)) == NULL ||
        (run->node = get(self->ctx, s_node)) == NULL ||
        (run->name = get(self->ctx, s_name)) == NULL ||
        (run->last_boot_ts = get(self->ctx, s_last_boot_ts)) == NULL ||
        (stats = get(self->ctx, s_stats)) == NULL ||
        (run->boot_anchors = get(stats, s_boot_anchors)) == NULL ||
        (run->file_nodes = get(stats, s_file_nodes)) == NULL ||
        (flag = get(self->ctx, s_node_is_file_name)) == NULL) {
        Py_XDECREF(stats);
        return -1;
    }
    Py_DECREF(stats);
    run->node_is_file_name = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    if (run->node_is_file_name < 0) return -1;
    if (!PyUnicode_Check(run->node) || !PyUnicode_Check(run->name) ||
        !PyDict_Check(run->last_boot_ts) || !PyDict_Check(run->boot_anchors) ||
        !PyDict_Check(run->file_nodes)) {
        return 0; /* not a file's state this loop knows: the Python path reads it all */
    }
    /* an Identities itself, not a subclass that watches its lookups (parallel.py's):
     * Identities.lookup read here, without a call into Python per record */
    if (cfg.identities != NULL && (PyObject *)Py_TYPE(run->identities) == cfg.identities) {
        if ((run->by_node = get(run->identities, s_by_node)) == NULL) return -1;
        if (!PyDict_Check(run->by_node)) Py_CLEAR(run->by_node);
    }
    PyObject *last = PyDict_GetItemWithError(run->last_boot_ts, run->node);
    if (last == NULL && PyErr_Occurred()) return -1;
    if (last != NULL) {
        run->last_boot = PyFloat_AsDouble(last);
        if (run->last_boot == -1.0 && PyErr_Occurred()) return -1;
        run->has_last_boot = 1;
    }
    return 1;
}

static int grow_scratch(Scanner *self, Py_ssize_t need) {
    if (need <= self->scratch_cap) return 0;
    if (need < 4096) need = 4096;
    unsigned char *scratch = fw_alloc((size_t)need);
    if (scratch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    fw_free(self->scratch);
    self->scratch = scratch;
    self->scratch_cap = need;
    return 0;
}

/* scan(buf, limit, hits, pos, counted, line, eof, max_line)
 *   -> (pos, counted, line, stamp_start, stamp_end), or None when the first hit past pos
 *      is not a line it reads (then nothing is allocated: another format's line costs
 *      no more than this)
 * Reads the hits past pos (ascending) for as long as it knows each line whole:
 * LineStream._scan's loop, with the same state in and out; stamp_start and stamp_end
 * bound the last line it read. */
static PyObject *Scanner_scan(Scanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyBytes_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(buf: bytes, limit, hits: list, pos, counted, line, eof, max_line)");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    PyObject *hits = args[2];
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    Py_ssize_t counted = PyLong_AsSsize_t(args[4]);
    long long line = PyLong_AsLongLong(args[5]);
    int eof = PyObject_IsTrue(args[6]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred()) return NULL;
    if (limit < 0 || limit > size || max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "scan: limit or max_line out of range");
        return NULL;
    }
    /* the first hit past pos: the hits ascend */
    Py_ssize_t i = 0, hi = PyList_GET_SIZE(hits);
    while (i < hi) {
        Py_ssize_t mid = i + (hi - i) / 2;
        Py_ssize_t at = PyLong_AsSsize_t(PyList_GET_ITEM(hits, mid));
        if (at == -1 && PyErr_Occurred()) return NULL;
        if (at <= pos) {
            i = mid + 1;
        } else {
            hi = mid;
        }
    }
    Py_ssize_t stamp_start = -1, stamp_end = -1;
    Run run;
    int started = 0; /* the file's state is taken up at the first line read, not before */
    memset(&run, 0, sizeof run);
    for (Py_ssize_t nhits = PyList_GET_SIZE(hits); i < nhits;) {
        Py_ssize_t hit = PyLong_AsSsize_t(PyList_GET_ITEM(hits, i));
        if (hit == -1 && PyErr_Occurred()) goto fail;
        if (hit <= pos) { /* a second keyword on a line already read, or inside a record */
            i++;
            continue;
        }
        if (hit < 1 || hit > limit) break;
        const char *nl = memrchr(buf, '\n', (size_t)(hit - 1));
        Py_ssize_t start = nl == NULL ? 0 : nl - buf + 1;
        nl = hit - 1 < limit ? memchr(buf + hit - 1, '\n', (size_t)(limit - (hit - 1))) : NULL;
        Py_ssize_t end = nl == NULL ? limit : nl - buf;
        if (end - start > max_line) break;
        /* room for what is copied out of the line: a stamp's digits, a squeezed detail */
        if (grow_scratch(self, end - start + 64) < 0) goto fail;
        Line L;
        if (!ascii_line(buf + start, end - start, 0, &L)) break;
        Env E;
        int r = read_envelope(self, &L, &E);
        if (r < 0) {
            PyErr_Clear(); /* the Python path meets the same failure and counts it */
            break;
        }
        if (r == 0 || has_any(&L, &cfg.before)) break;
        int claimed = has_any(&L, &cfg.claims);
        Record R;
        R.what = R_NONE;
        if (claimed ? !read_record(&L, &R) : has_any(&L, &cfg.after)) break;
        if (!started) {
            started = run_start(self, &run);
            if (started < 0) goto fail;
            if (started == 0) break; /* not a file's state this loop knows */
        }
        int boot_clock = claimed && E.clock == CLOCK_BOOT;
        if (boot_clock && run.has_last_boot && E.ts + 1.0 < run.last_boot) break; /* a reboot */
        Line N = {NULL, -1};
        Span serial = {0, -1};
        Py_ssize_t serial_end = -1;
        if (R.what == R_GPU_AT) { /* the GPU Board Serial Number line after it, if it is one */
            Py_ssize_t p = end + 1 < limit ? end + 1 : limit;
            if (p >= limit && !eof) break; /* the next line is in the next chunk */
            if (p < limit) {
                const char *nl2 = memchr(buf + p, '\n', (size_t)(limit - p));
                Py_ssize_t e2 = nl2 == NULL ? limit : nl2 - buf;
                if (!ascii_line(buf + p, e2 - p, 1, &N)) break;
                if (match_serial(&N, &serial)) serial_end = nl2 == NULL ? limit : e2 + 1;
            }
        }
        AerBody B;
        if (R.what == R_AER) { /* its following lines, whole in this chunk */
            if (!aer_body(buf, end, limit, eof, &L, &R, &B)) break;
            R.aer = &B;
        }
        /* the line is read: the stream's state moves past it */
        line += count_newlines(buf, counted, start);
        counted = start;
        pos = end + 1;
        if (R.what == R_AER && B.end >= 0) pos = B.end; /* its lines are this record's */
        stamp_start = start;
        stamp_end = end;
        /* a record takes up the batch before it makes any string: a new batch starts a
         * new string table, and the slots made before would be gone */
        if (R.what != R_NONE && !run.synced && sync_batch(self, &run) < 0) goto fail;
        PyObject *node = run.node;
        if (E.host.n >= 0) {
            Slot *host = bytes_slot(self, L.s + E.host.at, E.host.n);
            if (host == NULL) goto fail;
            node = host->str;
        }
        if (E.has_boot && note_anchor(&run, node, E.ts - E.boot) < 0) goto fail;
        if (boot_clock) {
            run.last_boot = E.ts;
            run.has_last_boot = 1;
            run.last_boot_dirty = 1;
        }
        i++;
        if (R.what == R_NONE) continue; /* a line no reader claims */
        Slot *pci = bytes_slot(self, (const unsigned char *)R.pci.text, R.pci.n);
        if (pci == NULL) goto fail;
        Slot *uuid = NULL, *serial_slot = NULL;
        if (R.what == R_XID && R.index >= 0) { /* the driver's own GPU<n> -> PCI map */
            PyObject *index = PyLong_FromLongLong(R.index);
            if (index == NULL) goto fail;
            r = call_hook(self->hooks, s_learn_index, node, index, pci->str, NULL);
            Py_DECREF(index);
            if (r < 0) goto fail;
        } else if (R.what == R_GPU_AT) {
            if ((uuid = bytes_slot(self, L.s + R.uuid.at, R.uuid.n)) == NULL) goto fail;
            if (serial.n >= 0 &&
                (serial_slot = bytes_slot(self, N.s + serial.at, serial.n)) == NULL) {
                goto fail;
            }
            if (call_hook(self->hooks, s_learn_identity, node, pci->str, uuid->str,
                          serial_slot ? serial_slot->str : Py_None) < 0) {
                goto fail;
            }
            if (serial_end >= 0) pos = serial_end; /* the serial line is this record's */
        } else if (R.what == R_AER && R.driver.n >= 0 &&
                   !(R.driver.n == 8 && memcmp(L.s + R.driver.at, "pcieport", 8) == 0)) {
            /* kmsg._saw_endpoint: the last endpoint that reported an error, per node */
            char dev[16];
            for (Py_ssize_t k = 0; k < R.dev.n; k++) dev[k] = (char)lower(L.s[R.dev.at + k]);
            PyObject *dev_str = PyUnicode_FromStringAndSize(dev, R.dev.n);
            PyObject *driver = PyUnicode_FromStringAndSize((const char *)L.s + R.driver.at,
                                                           R.driver.n);
            PyObject *at = PyLong_FromLongLong(line);
            r = dev_str == NULL || driver == NULL || at == NULL
                    ? -1
                    : call_hook(self->hooks, s_saw_endpoint, node, dev_str, driver, at);
            Py_XDECREF(dev_str);
            Py_XDECREF(driver);
            Py_XDECREF(at);
            if (r < 0) goto fail;
        }
        if (emit(self, &run, &L, &R, &E, node, pci, uuid, serial_slot, line) < 0) goto fail;
    }
    if (started > 0 && flush(self, &run) < 0) goto fail;
    run_clear(&run);
    if (stamp_end < 0) Py_RETURN_NONE; /* nothing read: the Python path reads hits[i] */
    return Py_BuildValue("nnLnn", pos, counted, line, stamp_start, stamp_end);
fail:
    run_clear(&run);
    return NULL;
}

/* ---- dcgm-exporter samples (dcgm.read_line, for the series it was told) ------------ */

/* A series whose sample the Python path read and emitted, told by dcgm.py (``_told``):
 * the fields each of its samples adds but line, time and value, as that sample's event
 * had them, and what they were true under (what was known of its GPU, as it was: the
 * GpuIdentity and its version; the envelope's host). A head told None is a metric no
 * catalog row names: its samples add nothing. One told True is a metric that has
 * events, of a series not told yet: only its samples of DCGM's blank are read here. Of
 * a series told "zeros only" (an Xid series, a per-reason clock event count), a sample
 * of 0 or less adds nothing, and one above 0 goes back to the Python path. */
enum { S_NODE, S_PCI, S_UUID, S_POD, S_NAMESPACE, S_DETAIL, S_SERIAL, S_FILE, N_SERIES_STRS };
static const int SERIES_FIELD[N_SERIES_STRS] = {F_NODE,      F_PCI,    F_UUID,   F_POD,
                                                F_NAMESPACE, F_DETAIL, F_SERIAL, F_FILE};
#define N_TOLD 16 /* known, version, host, kind, scope, link, gpu, the strings above, zeros */

typedef struct {
    uint64_t hash;
    Py_ssize_t n;
    PyObject *told; /* what Python told, held: the strings below are borrowed from it */
    int skip;       /* 1: no event; 2: only its blank samples are read here (told True) */
    int zeros_only; /* only its samples of 0 or less are read here (they add nothing) */
    PyObject *known;              /* the GpuIdentity it was filled in from, or Py_None */
    long long version, link, gpu; /* the identity's version then */
    int kind, scope;
    PyObject *host;
    PyObject *strs[N_SERIES_STRS]; /* Py_None: absent */
    int32_t ids[N_SERIES_STRS];    /* in the string table of batch ``generation`` */
    unsigned long long generation;
    unsigned long long current_in; /* the samples() call that found it current (0: none) */
    unsigned char key[];
} Series;

typedef struct SeriesTable {
    Series **slots;
    Py_ssize_t cap, used;
} SeriesTable;

#define MAX_SERIES 100000 /* dcgm._MAX_HEADS: a torn file's heads are not all kept */

static void series_clear(SeriesTable *t) {
    if (t == NULL) return;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        if (t->slots[i] != NULL) {
            Py_DECREF(t->slots[i]->told);
            fw_free(t->slots[i]);
        }
    }
    fw_free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}

static int series_grow(SeriesTable *t) {
    Py_ssize_t cap = t->cap ? t->cap * 2 : 256;
    Series **slots = fw_calloc((size_t)cap, sizeof(Series *));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        Series *S = t->slots[i];
        if (S == NULL) continue;
        Py_ssize_t j = (Py_ssize_t)(S->hash & (uint64_t)(cap - 1));
        while (slots[j] != NULL) j = (j + 1) & (cap - 1);
        slots[j] = S;
    }
    fw_free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static int long_of(PyObject *v, long long *out) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "dcgm series: a number that is no int");
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Read what Python told of a series into S (which holds it); -1 on error. */
static int series_load(Series *S, PyObject *told) {
    if (told == Py_None || told == Py_True) {
        S->skip = told == Py_None ? 1 : 2;
    } else {
        if (!PyTuple_Check(told) || PyTuple_GET_SIZE(told) != N_TOLD) {
            PyErr_SetString(PyExc_TypeError, "dcgm series: not a tuple of 16");
            return -1;
        }
        long long kind, scope;
        if (long_of(PyTuple_GET_ITEM(told, 1), &S->version) < 0 ||
            long_of(PyTuple_GET_ITEM(told, 3), &kind) < 0 ||
            long_of(PyTuple_GET_ITEM(told, 4), &scope) < 0 ||
            long_of(PyTuple_GET_ITEM(told, 5), &S->link) < 0 ||
            long_of(PyTuple_GET_ITEM(told, 6), &S->gpu) < 0) {
            return -1;
        }
        if (S->gpu > INT32_MOST || S->link > INT32_MOST || kind < 0 || kind > 127 ||
            scope > 127) {
            PyErr_SetString(PyExc_ValueError, "dcgm series: a number no column holds");
            return -1;
        }
        S->kind = (int)kind;
        S->scope = (int)scope;
        if ((S->zeros_only = PyObject_IsTrue(PyTuple_GET_ITEM(told, 15))) < 0) return -1;
        S->known = PyTuple_GET_ITEM(told, 0);
        S->host = PyTuple_GET_ITEM(told, 2);
        for (int k = 0; k < N_SERIES_STRS; k++) {
            PyObject *v = PyTuple_GET_ITEM(told, 7 + k);
            if (v != Py_None && !PyUnicode_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "dcgm series: a string that is no str");
                return -1;
            }
            S->strs[k] = v;
        }
        S->skip = 0;
    }
    Py_INCREF(told);
    Py_XSETREF(S->told, told);
    S->generation = 0; /* no batch yet: a batch's generation is 1 or more */
    S->current_in = 0;
    return 0;
}

/* The series of the head p[:n], from this scanner's table or else from what Python
 * told (``told``, a dict by head); NULL, no error set, when it was not told. ``fresh``:
 * look it up in ``told`` again (what the table holds is out of date). */
static Series *series_of(Scanner *self, const unsigned char *p, Py_ssize_t n, PyObject *told,
                         int fresh) {
    SeriesTable *t = self->series;
    if (t == NULL) {
        if ((t = self->series = fw_calloc(1, sizeof(SeriesTable))) == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
    }
    uint64_t h = hash_bytes(p, n);
    Series *S = NULL;
    Py_ssize_t j = 0;
    if (t->cap) {
        for (j = (Py_ssize_t)(h & (uint64_t)(t->cap - 1)); (S = t->slots[j]) != NULL;
             j = (j + 1) & (t->cap - 1)) {
            if (S->hash == h && S->n == n && memcmp(S->key, p, (size_t)n) == 0) break;
        }
        if (S != NULL && !fresh) return S;
    }
    PyObject *head = PyUnicode_FromStringAndSize((const char *)p, n);
    if (head == NULL) return NULL;
    PyObject *got = PyDict_GetItemWithError(told, head); /* borrowed */
    Py_DECREF(head);
    if (got == NULL) return NULL;
    if (S != NULL) { /* told again: read it again, unless it is what the table holds */
        if (got != S->told && series_load(S, got) < 0) return NULL;
        return S;
    }
    if (t->used >= MAX_SERIES) series_clear(t);
    if ((t->used + 1) * 2 > t->cap && series_grow(t) < 0) return NULL;
    if ((S = fw_calloc(1, sizeof(Series) + (size_t)n)) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    S->hash = h;
    S->n = n;
    memcpy(S->key, p, (size_t)n);
    if (series_load(S, got) < 0) {
        Py_XDECREF(S->told);
        fw_free(S);
        return NULL;
    }
    for (j = (Py_ssize_t)(h & (uint64_t)(t->cap - 1)); t->slots[j] != NULL;
         j = (j + 1) & (t->cap - 1)) {
    }
    t->slots[j] = S;
    t->used++;
    return S;
}

/* dcgm.is_blank: DCGM's not-supported / not-found / no-permission sentinels. */
static int is_blank(double v) {
    return (v >= 2147483632.0 && v <= 2147483647.0) || v >= 9223372036854775808.0 ||
           (v >= 140737488355328.0 && v <= 140737488355343.0);
}

/* float(text) for the decimal numbers a sample holds, [+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?
 * (the same correctly rounded double: CPython's own conversion); 0 for any other
 * spelling, which the Python path reads. */
static int sample_value(const Line *L, Span t, double *out) {
    const unsigned char *s = L->s + t.at;
    Py_ssize_t i = 0, n = t.n;
    char text[64];
    if (n >= (Py_ssize_t)sizeof text) return 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    Py_ssize_t digits = 0;
    while (i < n && is_digit(s[i])) i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i])) i++, digits++;
    }
    if (digits == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        Py_ssize_t e = 0;
        while (i < n && is_digit(s[i])) i++, e++;
        if (e == 0) return 0;
    }
    if (i != n) return 0;
    if (fast_decimal(s, n, out)) return 1;
    memcpy(text, s, (size_t)n);
    text[n] = '\0';
    char *end = NULL;
    double v = PyOS_string_to_double(text, &end, NULL); /* past a double: ±inf, no error */
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != text + n) return 0;
    *out = v;
    return 1;
}

/* int(text) / 1000 for a time stamp of at most 15 digits, [+-]?\d{1,15}: exact in a
 * double, so the division rounds as Python's int / int does. */
static int sample_stamp(const Line *L, Span t, double *out) {
    const unsigned char *s = L->s + t.at;
    Py_ssize_t i = 0;
    int negative = 0;
    if (t.n > 0 && (s[0] == '+' || s[0] == '-')) negative = s[i++] == '-';
    if (t.n - i < 1 || t.n - i > 15) return 0;
    long long v = 0;
    for (; i < t.n; i++) {
        if (!is_digit(s[i])) return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = (double)(negative ? -v : v) / 1000.0;
    return 1;
}

/* envelope.STAMPED_LINE on a line that starts with a sample's word: of its forms only
 * a klog stamp, .{0,60}?\[[IWEF]\d{3,4} \d\d:\d\d:\d\d, can match there. */
static int klog_stamped(const Line *L) {
    const unsigned char *s = L->s, *end = s + (L->n < 61 ? L->n : 61), *open = s;
    while ((open = memchr(open, '[', (size_t)(end - open))) != NULL) {
        Py_ssize_t j = ++open - s;
        if (j >= L->n || (s[j] != 'I' && s[j] != 'W' && s[j] != 'E' && s[j] != 'F')) continue;
        j++;
        Py_ssize_t d = skip_digits(L, j) - j;
        for (Py_ssize_t k = d < 4 ? d : 4; k >= 3; k--) { /* \d{3,4}, greedy, then back */
            Py_ssize_t m = j + k;
            if (m + 9 <= L->n && s[m] == ' ' && is_digit(s[m + 1]) && is_digit(s[m + 2]) &&
                s[m + 3] == ':' && is_digit(s[m + 4]) && is_digit(s[m + 5]) && s[m + 6] == ':' &&
                is_digit(s[m + 7]) && is_digit(s[m + 8])) {
                return 1;
            }
        }
    }
    return 0;
}

static int starts_with_any(const Line *L, const Words *w) {
    for (Py_ssize_t i = 0; i < w->n; i++) {
        if (w->words[i].n <= L->n && memcmp(L->s, w->words[i].text, (size_t)w->words[i].n) == 0)
            return 1;
    }
    return 0;
}

typedef struct {
    PyObject *told;   /* head -> what Python told */
    double env_ts;    /* NaN: none */
    int env_clock;    /* an id of events.CLOCKS */
    PyObject *host;   /* the envelope's host, or Py_None */
    unsigned long long call; /* this call's number (Scanner.samples_call) */
} Samples;

/* Whether S's fields are still what an event of it would get: the same host, and what
 * is known of its GPU unchanged since (then learn() would change nothing either); -1
 * on error. Asked once per series per call: the host is the call's, and no identity
 * changes within it (the loop calls no reader). */
static int series_current(Series *S, const Samples *A) {
    if (S->current_in == A->call) return 1;
    if (S->known != Py_None) {
        PyObject *got = PyObject_GetAttr(S->known, s_version);
        long long version;
        if (got == NULL) return -1;
        int r = long_of(got, &version);
        Py_DECREF(got);
        if (r < 0) return -1;
        if (version != S->version) return 0;
    }
    int same = S->host == A->host;
    if (!same && S->host != Py_None && A->host != Py_None) {
        same = PyObject_RichCompareBool(S->host, A->host, Py_EQ);
    }
    if (same == 1) S->current_in = A->call;
    return same;
}

/* One sample line (dcgm.read_line then FileContext.emit): 1 read (its event written,
 * or none for a metric without a catalog row), 0 not one it knows whole (the Python
 * path reads it, and counts what it must), -1 on error. */
static int sample(Scanner *self, Run *run, const Line *L, long long line, const Samples *A) {
    const unsigned char *s = L->s;
    Py_ssize_t n = L->n, head_n = -1, i;
    for (i = n - 1; i >= 0; i--) { /* text.rfind("}") */
        if (s[i] == '}') {
            head_n = i + 1;
            break;
        }
    }
    Py_ssize_t rest = head_n;
    if (head_n < 0) { /* no labels: text.partition(" ") */
        const unsigned char *sp = memchr(s, ' ', (size_t)n);
        head_n = sp == NULL ? n : sp - s;
        rest = sp == NULL ? n : head_n + 1;
    }
    Span tok[2];
    int k = 0;
    for (i = rest; i < n;) { /* rest.split() */
        i = skip_spaces(L, i);
        if (i >= n) break;
        Py_ssize_t a = i;
        while (i < n && !is_space(s[i])) i++;
        if (k == 2) return 0; /* malformed: the Python path counts it */
        tok[k].at = a;
        tok[k++].n = i - a;
    }
    if (k == 0) return 0;
    Series *S = series_of(self, s, head_n, A->told, 0);
    if (S == NULL) return PyErr_Occurred() ? -1 : 0;
    if (S->skip == 1) return 1;
    double value, ts = NAN;
    int clock;
    if (!sample_value(L, tok[0], &value) || !isfinite(value)) return 0;
    if (k == 2) {
        if (!sample_stamp(L, tok[1], &ts) || !(ts >= cfg.earliest && ts <= cfg.latest)) return 0;
        clock = cfg.clock[CLOCK_WALL];
    } else if (isnan(A->env_ts)) {
        clock = A->env_clock;
    } else if (A->env_ts >= cfg.earliest && A->env_ts <= cfg.latest) {
        ts = A->env_ts;
        clock = A->env_clock;
    } else { /* the time of a line before it, run past 9999 */
        clock = cfg.clock[CLOCK_NONE];
    }
    if (is_blank(value)) { /* read, and counted as skipped: no value, nothing learned */
        run->blanks++;
        return 1;
    }
    if (S->skip) return 0;
    int current = series_current(S, A);
    if (current == 0) { /* told again since? */
        if ((S = series_of(self, s, head_n, A->told, 1)) == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        current = S->skip ? 0 : series_current(S, A);
    }
    if (current <= 0) return current;
    if (S->zeros_only) return value > 0 ? 0 : 1; /* 0: no Xid yet, a reason not seen */
    if (!run->synced && sync_batch(self, run) < 0) return -1;
    if (run->row >= self->capacity) {
        PyErr_SetString(PyExc_RuntimeError, "no room left in the columns given");
        return -1;
    }
    if (S->generation != self->generation) { /* its strings, in the order add meets them */
        for (int j = 0; j < N_SERIES_STRS; j++) {
            S->ids[j] = -1;
            if (S->strs[j] != Py_None && (S->ids[j] = str_id(self, run, S->strs[j])) == -2) {
                return -1;
            }
        }
        S->generation = self->generation;
    }
    Py_ssize_t row = run->row;
#define PUT(f, type, value) (((type *)self->views[f].buf)[row] = (type)(value))
    PUT(F_KIND, int8_t, S->kind);
    if (!isnan(ts)) PUT(F_TS, double, ts);
    PUT(F_CLOCK, int8_t, clock);
    PUT(F_SOURCE, int8_t, cfg.dcgm_source);
    PUT(F_LINE, int64_t, line);
    for (int j = 0; j < N_SERIES_STRS; j++) {
        if (S->ids[j] >= 0) PUT(SERIES_FIELD[j], int32_t, S->ids[j]);
    }
    if (S->gpu >= 0) PUT(F_GPU, int32_t, S->gpu);
    if (S->link >= 0) PUT(F_LINK, int32_t, S->link);
    if (S->scope >= 0) PUT(F_SCOPE, int8_t, S->scope);
    PUT(F_VALUE, double, value);
#undef PUT
    run->row++;
    run->pending++;
    return run->row >= cfg.batch_size ? (flush(self, run) < 0 ? -1 : 1) : 1;
}

/* samples(buf, pos, limit, line, max_line, told, env_ts, env_clock, env_host)
 *   -> (pos, counted, line) after the last line it read, or None when it read none
 * LineStream._run's loop over a run of dcgm-exporter lines (``line`` the number of the
 * one before pos), for as long as it knows each line whole: a comment, or a sample of
 * a series Python told (``told``: dcgm.py) whose value and time stamp are plain
 * numbers. It stops before any other: a line too long, with a NUL or a byte past
 * ASCII, that another reader claims or that is stamped (_scan reads it), a sample of a
 * series not told or no longer as told, a value or stamp to count as unreadable. */
static PyObject *Scanner_samples(Scanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9 || !PyBytes_Check(args[0]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "samples(buf: bytes, pos, limit, line, max_line, "
                                         "told: dict, env_ts, env_clock, env_host)");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    long long line = PyLong_AsLongLong(args[3]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[4]);
    Samples A = {args[5], PyFloat_AsDouble(args[6]), (int)PyLong_AsLong(args[7]), args[8],
                 ++self->samples_call};
    if (PyErr_Occurred()) return NULL;
    if (limit < 0 || limit > size || pos < 0 || max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "samples: pos, limit or max_line out of range");
        return NULL;
    }
    Run run;
    memset(&run, 0, sizeof run);
    int started = run_start(self, &run);
    if (started <= 0) {
        run_clear(&run);
        if (started < 0) return NULL;
        Py_RETURN_NONE;
    }
    Py_ssize_t counted = -1;
    while (pos < limit) {
        const char *nl = memchr(buf + pos, '\n', (size_t)(limit - pos));
        Py_ssize_t end = nl == NULL ? limit : nl - buf;
        Line L;
        if (end - pos > max_line || !ascii_line(buf + pos, end - pos, 0, &L)) break;
        if (!starts_with_any(&L, &cfg.sample_starts) || has_any(&L, &cfg.sample_before) ||
            klog_stamped(&L)) {
            break;
        }
        if (L.s[0] != '#') { /* HELP and TYPE comments carry nothing */
            int r = sample(self, &run, &L, line + 1, &A);
            if (r < 0) goto fail;
            if (r == 0) break;
        }
        line++;
        counted = pos;
        pos = end + 1;
    }
    if (flush(self, &run) < 0) goto fail;
    run_clear(&run);
    if (counted < 0) Py_RETURN_NONE;
    return Py_BuildValue("nnL", pos, counted, line);
fail:
    run_clear(&run);
    return NULL;
}

/* ---- the type and the module ------------------------------------------------------ */

static int Scanner_init(Scanner *self, PyObject *args, PyObject *kwargs) {
    PyObject *ctx, *hooks;
    static char *names[] = {"ctx", "hooks", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Scanner", names, &ctx, &hooks)) return -1;
    if (!cfg.ready) {
        PyErr_SetString(PyExc_RuntimeError, "_kmsgscan.configure() was not called");
        return -1;
    }
    Py_INCREF(ctx);
    Py_XSETREF(self->ctx, ctx);
    Py_INCREF(hooks);
    Py_XSETREF(self->hooks, hooks);
    return 0;
}

static void Scanner_dealloc(Scanner *self) {
    release_views(self);
    table_clear(&self->strings);
    series_clear(self->series);
    fw_free(self->series);
    Py_CLEAR(self->dense);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->hooks);
    fw_free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))Scanner_scan, METH_FASTCALL,
     "scan(buf, limit, hits, pos, counted, line, eof, max_line) -> (pos, counted, line, "
     "stamp_start, stamp_end) or None: read the hits past pos while it knows each line whole."},
    {"samples", (PyCFunction)(void (*)(void))Scanner_samples, METH_FASTCALL,
     "samples(buf, pos, limit, line, max_line, told, env_ts, env_clock, env_host) -> (pos, "
     "counted, line) or None: read a run of dcgm-exporter lines while it knows each whole."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fleetwatch.sources._kmsgscan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled kernel-record loop for one file: Scanner(ctx, hooks).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

static int words_from(PyObject *config, const char *key, Words *out) {
    PyObject *seq = PyDict_GetItemString(config, key);
    if (seq == NULL || !PyTuple_Check(seq)) {
        PyErr_Format(PyExc_KeyError, "configure: %s must be a tuple of bytes", key);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    Word *words = fw_calloc((size_t)(n ? n : 1), sizeof(Word));
    if (words == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyTuple_GET_ITEM(seq, i);
        if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) == 0) {
            PyErr_Format(PyExc_TypeError, "configure: %s holds a non-bytes or empty word", key);
            for (Py_ssize_t j = 0; j < i; j++) fw_free(words[j].text);
            fw_free(words);
            return -1;
        }
        words[i].n = PyBytes_GET_SIZE(b);
        words[i].text = fw_alloc((size_t)words[i].n);
        if (words[i].text == NULL) {
            for (Py_ssize_t j = 0; j < i; j++) fw_free(words[j].text);
            fw_free(words);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(words[i].text, PyBytes_AS_STRING(b), (size_t)words[i].n);
    }
    out->words = words;
    out->n = n;
    return 0;
}

static int int_from(PyObject *table, const char *key, int *out) {
    PyObject *v = PyDict_GetItemString(table, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "configure: no %s", key);
        return -1;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = (int)x;
    return 0;
}

static PyObject *table_of(PyObject *config, const char *key) {
    PyObject *t = PyDict_GetItemString(config, key);
    if (t == NULL || !PyDict_Check(t)) {
        PyErr_Format(PyExc_KeyError, "configure: %s must be a dict", key);
        return NULL;
    }
    return t;
}

/* config["aer"]: (correctable, uncorrectable), each a dict of bit (0-31) -> name. */
static int aer_names_from(PyObject *config) {
    PyObject *both = PyDict_GetItemString(config, "aer");
    if (both == NULL || !PyTuple_Check(both) || PyTuple_GET_SIZE(both) != 2) {
        PyErr_SetString(PyExc_KeyError, "configure: aer must be two dicts of bit -> name");
        return -1;
    }
    for (int reg = 0; reg < 2; reg++) {
        PyObject *names = PyTuple_GET_ITEM(both, reg), *key, *value;
        Py_ssize_t i = 0;
        if (!PyDict_Check(names)) {
            PyErr_SetString(PyExc_TypeError, "configure: aer holds a non-dict");
            return -1;
        }
        while (PyDict_Next(names, &i, &key, &value)) {
            long bit = PyLong_AsLong(key);
            if (bit == -1 && PyErr_Occurred()) return -1;
            Py_ssize_t n;
            const char *text = PyUnicode_Check(value) ? PyUnicode_AsUTF8AndSize(value, &n) : NULL;
            if (bit < 0 || bit >= 32 || text == NULL) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "configure: an aer bit past 0-31, or no name");
                }
                return -1;
            }
            Word *w = &cfg.aer_names[reg][bit];
            fw_free(w->text);
            if ((w->text = fw_alloc((size_t)n + 1)) == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(w->text, text, (size_t)n);
            w->n = n;
        }
    }
    return 0;
}

/* configure(config): the event tables and the readers' words, once per process. */
static PyObject *configure(PyObject *module, PyObject *config) {
    if (cfg.ready) Py_RETURN_NONE;
    if (!PyDict_Check(config)) {
        PyErr_SetString(PyExc_TypeError, "configure(config: dict)");
        return NULL;
    }
    PyObject *kinds = table_of(config, "kinds"), *clocks = table_of(config, "clocks"),
             *severities = table_of(config, "severities"), *numbers = table_of(config, "numbers");
    if (kinds == NULL || clocks == NULL || severities == NULL || numbers == NULL) return NULL;
    int batch_size;
    if (int_from(kinds, "xid", &cfg.kind[K_XID]) < 0 ||
        int_from(kinds, "sxid", &cfg.kind[K_SXID]) < 0 ||
        int_from(kinds, "gpu_lost", &cfg.kind[K_GPU_LOST]) < 0 ||
        int_from(kinds, "gpu_identity", &cfg.kind[K_GPU_IDENTITY]) < 0 ||
        int_from(clocks, "none", &cfg.clock[CLOCK_NONE]) < 0 ||
        int_from(clocks, "wall", &cfg.clock[CLOCK_WALL]) < 0 ||
        int_from(clocks, "boot", &cfg.clock[CLOCK_BOOT]) < 0 ||
        int_from(severities, "nonfatal", &cfg.severity[SEV_NONFATAL]) < 0 ||
        int_from(severities, "fatal", &cfg.severity[SEV_FATAL]) < 0 ||
        int_from(severities, "corrected", &cfg.severity[SEV_CORRECTED]) < 0 ||
        int_from(kinds, "aer", &cfg.kind[K_AER]) < 0 ||
        int_from(numbers, "source", &cfg.source) < 0 ||
        int_from(numbers, "dcgm_source", &cfg.dcgm_source) < 0 ||
        int_from(numbers, "batch_size", &batch_size) < 0) {
        return NULL;
    }
    cfg.batch_size = batch_size;
    PyObject *earliest = PyDict_GetItemString(numbers, "earliest");
    PyObject *latest = PyDict_GetItemString(numbers, "latest");
    if (earliest == NULL || latest == NULL) {
        PyErr_SetString(PyExc_KeyError, "configure: numbers needs earliest and latest");
        return NULL;
    }
    cfg.earliest = PyFloat_AsDouble(earliest);
    cfg.latest = PyFloat_AsDouble(latest);
    if (PyErr_Occurred()) return NULL;
    if (words_from(config, "claims", &cfg.claims) < 0 ||
        words_from(config, "before", &cfg.before) < 0 ||
        words_from(config, "after", &cfg.after) < 0 ||
        words_from(config, "sample_starts", &cfg.sample_starts) < 0 ||
        words_from(config, "sample_before", &cfg.sample_before) < 0 ||
        aer_names_from(config) < 0) {
        return NULL;
    }
    PyObject *identities = PyDict_GetItemString(config, "identities"); /* optional */
    if (identities != NULL && PyType_Check(identities)) {
        Py_INCREF(identities);
        cfg.identities = identities;
    }
    cfg.ready = 1;
    Py_RETURN_NONE;
}

/* _allocate(n): n blocks from this module's allocator, each freed at once. For the
 * test that the allocation counter sees what this module allocates. */
static PyObject *allocate(PyObject *module, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        void *block = fw_alloc(64);
        if (block == NULL) return PyErr_NoMemory();
        fw_free(block);
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_O, "configure(config): the event tables and readers' words."},
    {"_allocate", allocate, METH_O, "_allocate(n): n blocks from this module's allocator."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fleetwatch.sources._kmsgscan",
    "The compiled twin of the line stream's loop over kernel records (kmsg_compiled.py).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__kmsgscan(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_builder, "builder"},
        {&s_identities, "identities"},
        {&s_node, "node"},
        {&s_name, "name"},
        {&s_node_is_file_name, "node_is_file_name"},
        {&s_last_boot_ts, "last_boot_ts"},
        {&s_stats, "stats"},
        {&s_boot_anchors, "boot_anchors"},
        {&s_file_nodes, "file_nodes"},
        {&s_columns_in_place, "columns_in_place"},
        {&s_intern, "intern"},
        {&s_added_in_place, "added_in_place"},
        {&s_lookup, "lookup"},
        {&s_by_node, "_by_node"},
        {&s_uuid, "uuid"},
        {&s_serial, "serial"},
        {&s_gpu, "gpu"},
        {&s_learn_index, "learn_index"},
        {&s_learn_identity, "learn_identity"},
        {&s_month, "month"},
        {&s_year, "year"},
        {&s_minute, "minute"},
        {&s_out_of_range, "out_of_range"},
        {&s_version, "version"},
        {&s_blank_samples, "blank_samples"},
        {&s_saw_endpoint, "saw_endpoint"},
    };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (*names[k].slot == NULL) {
            *names[k].slot = PyUnicode_InternFromString(names[k].text);
            if (*names[k].slot == NULL) return NULL;
        }
    }
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
