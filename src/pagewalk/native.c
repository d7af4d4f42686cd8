/*
 * pagewalk.native: the per-page loops of the everyday commands, in C.
 *
 * Why C: a command on a process of a few hundred MB does a few milliseconds of
 * kernel reads, while importing numpy costs 60 to 90 ms (bench/RESULTS.md, issue
 * 15).  These functions do the per-page work of `maps` (counting pagemap entries
 * per mapping) and `types -p` (a histogram of frames by their kpageflags) with no
 * numpy, so those commands start in the time of Python itself.
 *
 * No page rule is decided here.  The caller passes tables that the rules in
 * pagewalk/core/states.py filled in (which of a pagemap entry's top bits count in
 * which column; which swap types are real swap and which are guard markers); this
 * code only looks them up and adds.  tests/test_native.py proves the counts equal
 * those of the numpy decoding (pagewalk/core/pagetable.py) on the same entries.
 *
 * Pagemap entries are u64 in native byte order (fs/proc/task_mmu.c,
 * Documentation/admin-guide/mm/pagemap.rst): bit 63 present, 62 swap, 61 file or
 * shared anonymous, 58 guard region, 57 uffd-wp, 56 exclusively mapped, 55
 * soft-dirty; bits 0-54 the PFN of a present page, or for a swap entry the swap
 * type (the low type_bits bits) and offset (the rest).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_GUARD_REGION (1ULL << 58)
#define PM_PFRAME_MASK ((1ULL << 55) - 1)
#define TOP_SHIFT 55      /* bits 55..63: the 9 bits the selection table is indexed by */
#define TOP_VALUES 512
#define COLUMNS 10        /* pagetable.COUNT_COLUMNS */
#define SEL_FIELDS 8      /* pagetable: present file exclusive soft_dirty uffd_wp guard swapped ambiguous */
#define RUN_GAP 8         /* kpage.RUN_GAP: PFNs this close are read in one pread */
#define READ_MAX (1 << 16) /* entries a pread at most */
#define BLOCK (1 << 16)   /* pagemap entries handled at a time: bounds the memory used */

/* Columns of pagetable.COUNT_COLUMNS that the selection table's fields add to. */
static const int SEL_COLUMN[SEL_FIELDS] = {1, 2, 3, 4, 5, 6, 7, 9};
enum { COL_PAGES = 0, COL_GUARD = 6, COL_SWAPPED = 7, COL_ZERO = 8 };

/* The items of a sequence, copied into a tuple (a caller's list cannot change under
 * us while they are read), and room for item_bytes a item; NULL with an exception set. */
static PyObject *items_and_room(PyObject *obj, size_t item_bytes, void **out, Py_ssize_t *n)
{
    PyObject *seq = PySequence_Tuple(obj);
    if (seq == NULL)
        return NULL;
    *n = PyTuple_GET_SIZE(seq);
    *out = PyMem_Malloc((*n ? (size_t)*n : 1) * item_bytes);
    if (*out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    return seq;
}

/* A sequence of ints (exact ints: no __index__ runs Python code mid-parse). */
static int sequence_of_ints(PyObject *obj, Py_ssize_t **out, Py_ssize_t *n)
{
    PyObject *seq = items_and_room(obj, sizeof(Py_ssize_t), (void **)out, n);
    if (seq == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, i);
        (*out)[i] = PyLong_Check(item) ? PyLong_AsSsize_t(item) : -1;
        if ((*out)[i] == -1 && (PyErr_Occurred() || !PyLong_Check(item))) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "segments and lengths must be sequences of ints");
            PyMem_Free(*out);
            *out = NULL;
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* Pairs of non-negative ints from a sequence of 2-tuples, as a flat array of 2 * n. */
static int int_pairs(PyObject *obj, const char *what, uint64_t **out, Py_ssize_t *n)
{
    PyObject *seq = items_and_room(obj, 2 * sizeof(uint64_t), (void **)out, n);
    if (seq == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyLong_Check(PyTuple_GET_ITEM(pair, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_Format(PyExc_TypeError, "%s must be (int, int) pairs", what);
            goto fail;
        }
        for (int k = 0; k < 2; k++) {
            (*out)[2 * i + k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(pair, k));
            if ((*out)[2 * i + k] == (uint64_t)-1 && PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError, "%s must be pairs of non-negative 64-bit ints", what);
                goto fail;
            }
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    PyMem_Free(*out);
    *out = NULL;
    Py_DECREF(seq);
    return -1;
}

/* (first entry, entries) pairs of a buffer of total entries, checked to lie inside it. */
static int segment_pairs(PyObject *obj, Py_ssize_t total, uint64_t **out, Py_ssize_t *n)
{
    if (int_pairs(obj, "segments", out, n) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < *n; i++)
        if ((*out)[2 * i] > (uint64_t)total || (*out)[2 * i + 1] > (uint64_t)total - (*out)[2 * i]) {
            PyErr_SetString(PyExc_IndexError, "a segment reaches past the entries");
            PyMem_Free(*out);
            *out = NULL;
            return -1;
        }
    return 0;
}

/* Whether a buffer's memory holds aligned u64s (else ValueError). */
static int aligned(const Py_buffer *b, const char *what)
{
    if (((uintptr_t)b->buf & 7) == 0 || b->len == 0)  /* (an empty one is never read) */
        return 1;
    PyErr_Format(PyExc_ValueError, "%s must be 8-byte aligned", what);
    return 0;
}

PyDoc_STRVAR(count_entries_doc,
"count_entries(table, raw, segments, lengths, sel, kind, type_bits, marker_guard, zero_ranges)\n"
"--\n\n"
"Add the counts of pagemap entries to rows of a table, in place.\n\n"
"table: a writable buffer of int64, rows of the 10 columns of\n"
"pagewalk.core.pagetable.COUNT_COLUMNS.  raw: a buffer of u64 entries; its first\n"
"lengths[0] entries are counted into row segments[0], the next lengths[1] into\n"
"row segments[1], and so on.  sel: 512 x 8 int64, what an entry with top bits\n"
"(55..63) t adds to the columns present, file, exclusive, soft_dirty, uffd_wp,\n"
"guard, swapped, ambiguous.  kind: None, or (PFNs visible) 64 bytes saying what a\n"
"swap entry without the guard-region bit is, indexed by its swap type * 2 + whether\n"
"its offset has the bit marker_guard: bit 0 swapped, bit 1 guard.  zero_ranges:\n"
"inclusive (first, last) PFN ranges of the zero pages; present entries there count\n"
"in the zero column.");

static PyObject *count_entries(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *segments_obj, *lengths_obj, *kind_obj, *zero_obj;
    Py_buffer table = {0}, raw = {0}, sel = {0}, kind = {0};
    unsigned int type_bits;
    unsigned long long marker_guard;
    Py_ssize_t *segments = NULL, *lengths = NULL, nseg = 0, nlen = 0, nzero = 0;
    uint64_t *zero = NULL;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "w*y*OOy*OIKO", &table, &raw, &segments_obj, &lengths_obj, &sel,
                          &kind_obj, &type_bits, &marker_guard, &zero_obj))
        return NULL;
    if (kind_obj != Py_None && PyObject_GetBuffer(kind_obj, &kind, PyBUF_SIMPLE) < 0)
        goto done;
    if (sequence_of_ints(segments_obj, &segments, &nseg) < 0 || sequence_of_ints(lengths_obj, &lengths, &nlen) < 0)
        goto done;
    if (int_pairs(zero_obj, "zero_ranges", &zero, &nzero) < 0)
        goto done;
    if (!aligned(&table, "table") || !aligned(&raw, "raw") || !aligned(&sel, "sel"))
        goto done;
    if (nseg != nlen) {
        PyErr_SetString(PyExc_ValueError, "segments and lengths differ in length");
        goto done;
    }
    if (sel.len != TOP_VALUES * SEL_FIELDS * 8) {
        PyErr_SetString(PyExc_ValueError, "sel must hold 512 x 8 int64");
        goto done;
    }
    if (type_bits > 8 || (kind.buf != NULL && ((Py_ssize_t)2 << type_bits) > kind.len)) {
        PyErr_SetString(PyExc_ValueError, "type_bits must be at most 8, and kind hold 2 << type_bits bytes");
        goto done;
    }
    Py_ssize_t rows = table.len / (COLUMNS * 8), total = 0;
    for (Py_ssize_t s = 0; s < nseg; s++) {
        if (segments[s] < 0 || segments[s] >= rows || lengths[s] < 0) {
            PyErr_SetString(PyExc_IndexError, "segment row out of the table, or a negative length");
            goto done;
        }
        if (lengths[s] > raw.len / 8 - total) {  /* (checked before adding: no overflow) */
            PyErr_SetString(PyExc_ValueError, "lengths add up to more entries than raw holds");
            goto done;
        }
        total += lengths[s];
    }

    const uint64_t *entry = raw.buf;
    const int64_t *selection = sel.buf;
    const unsigned char *kinds = kind.buf;
    int64_t *out = table.buf;
    uint64_t type_mask = (1ULL << type_bits) - 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t s = 0; s < nseg; s++) {
        int64_t row[COLUMNS] = {0};
        const uint64_t *end = entry + lengths[s];
        row[COL_PAGES] = lengths[s];
        for (; entry < end; entry++) {
            uint64_t e = *entry;
            if (e == 0)
                continue;  /* untouched: the common case in reservations */
            const int64_t *add = selection + (e >> TOP_SHIFT) * SEL_FIELDS;
            for (int f = 0; f < SEL_FIELDS; f++)
                row[SEL_COLUMN[f]] += add[f];
            uint64_t frame = e & PM_PFRAME_MASK;
            if (kinds != NULL && (e & (PM_SWAP | PM_GUARD_REGION)) == PM_SWAP) {
                unsigned char k = kinds[((frame & type_mask) << 1) | (((frame >> type_bits) & marker_guard) != 0)];
                row[COL_SWAPPED] += k & 1;
                row[COL_GUARD] += (k >> 1) & 1;
            } else if (nzero && (e & PM_PRESENT)) {
                for (Py_ssize_t z = 0; z < nzero; z++)
                    if (frame >= zero[2 * z] && frame <= zero[2 * z + 1]) {
                        row[COL_ZERO]++;
                        break;
                    }
            }
        }
        int64_t *target = out + segments[s] * COLUMNS;
        for (int c = 0; c < COLUMNS; c++)
            target[c] += row[c];
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&table);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&sel);
    PyBuffer_Release(&kind);  /* (safe on the zeroed buffer of kind None) */
    PyMem_Free(segments);
    PyMem_Free(lengths);
    PyMem_Free(zero);
    return result;
}

PyDoc_STRVAR(find_entry_doc,
"find_entry(raw, mask, value)\n"
"--\n\n"
"The index of the first u64 of the buffer raw whose bits mask equal value; -1 if none.");

static PyObject *find_entry(PyObject *self, PyObject *args)
{
    Py_buffer raw = {0};
    unsigned long long mask, value;
    Py_ssize_t found = -1;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*KK", &raw, &mask, &value))
        return NULL;
    if (!aligned(&raw, "raw")) {
        PyBuffer_Release(&raw);
        return NULL;
    }
    const uint64_t *entry = raw.buf;
    Py_ssize_t n = raw.len / 8;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((entry[i] & mask) == value) {
            found = i;
            break;
        }
    PyBuffer_Release(&raw);
    return PyLong_FromSsize_t(found);
}

/* -- frames by their flags (types -p) ------------------------------------------------- */

typedef struct {
    uint64_t flags, cgroup, count;
    uint32_t top, kind;  /* kind 0: a frame; 1 + key: a swap entry (see frame_histogram) */
    int used;
} Slot;

typedef struct {
    Slot *slots;
    size_t size, used;  /* size: a power of 2 */
} Histogram;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int hist_add(Histogram *h, uint32_t kind, uint64_t flags, uint32_t top, uint64_t cgroup, uint64_t n)
{
    if (2 * (h->used + 1) > h->size) {
        size_t size = h->size ? 2 * h->size : 256;
        Slot *slots = calloc(size, sizeof(Slot));
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < h->size; i++) {
            if (!h->slots[i].used)
                continue;
            size_t j = mix(h->slots[i].flags ^ ((uint64_t)h->slots[i].top << 48) ^ h->slots[i].cgroup * 31
                           ^ ((uint64_t)h->slots[i].kind << 40)) & (size - 1);
            while (slots[j].used)
                j = (j + 1) & (size - 1);
            slots[j] = h->slots[i];
        }
        free(h->slots);
        h->slots = slots;
        h->size = size;
    }
    size_t j = mix(flags ^ ((uint64_t)top << 48) ^ cgroup * 31 ^ ((uint64_t)kind << 40)) & (h->size - 1);
    while (h->slots[j].used) {
        Slot *s = &h->slots[j];
        if (s->flags == flags && s->top == top && s->cgroup == cgroup && s->kind == kind) {
            s->count += n;
            return 0;
        }
        j = (j + 1) & (h->size - 1);
    }
    h->slots[j] = (Slot){flags, cgroup, n, top, kind, 1};
    h->used++;
    return 0;
}

/* Entries first_pfn .. first_pfn + n - 1 of a per-PFN file into out; zeros past the
 * end of memory (a short read).  Returns -1 with errno set on an error. */
static int read_frames(int fd, uint64_t first_pfn, size_t n, uint64_t *out)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)(out + got), (n - got) * 8, (off_t)((first_pfn + got) * 8));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r < 8)
            break;  /* the end (a saved file may end inside an entry: that one reads as 0) */
        got += (size_t)r / 8;
    }
    memset(out + got, 0, (n - got) * 8);
    return 0;
}

/* The values of pfns[0..n) from a per-PFN file, into values[0..n): runs of ascending PFNs
 * at most RUN_GAP apart are one read (through scratch, READ_MAX + RUN_GAP entries). */
static int read_values(int fd, const uint64_t *pfns, size_t n, uint64_t *values, uint64_t *scratch)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && pfns[j] >= pfns[j - 1] && pfns[j] - pfns[j - 1] <= RUN_GAP && pfns[j] - pfns[i] < READ_MAX)
            j++;
        uint64_t first = pfns[i];
        if (read_frames(fd, first, (size_t)(pfns[j - 1] - first + 1), scratch) < 0)
            return -1;
        for (size_t k = i; k < j; k++)
            values[k] = scratch[pfns[k] - first];
        i = j;
    }
    return 0;
}

PyDoc_STRVAR(frame_histogram_doc,
"frame_histogram(raw, flags_fd, cgroup_fd, type_bits, marker_guard, counts, segments=None)\n"
"--\n\n"
"Count pagemap entries by what page-types keys them by, into the dict counts.\n\n"
"raw: a buffer of u64 pagemap entries; segments: (first entry, entries) pairs of it\n"
"to count (None: all of it).  An entry that is present with a PFN other than 0\n"
"counts under (0, kpageflags of its frame, its top bits 55..63, its kpagecgroup\n"
"entry or 0 where cgroup_fd is -1); an entry with the swap bit under\n"
"(1 + swap type * 2 + whether its offset has the bit marker_guard, 0, top bits, 0),\n"
"for the caller to class with pagewalk.core.states.swap_classes; other entries are\n"
"not counted.  flags_fd and cgroup_fd: /proc/kpageflags and /proc/kpagecgroup,\n"
"read in runs of nearby frames (0 past the end of memory).  Raises OSError where a\n"
"read fails.");

/* Sort keys[0..n) ascending (LSD radix, 11 bits a pass, only as many passes as the
 * largest key needs), using tmp[0..n). */
static void radix_sort(uint64_t *keys, uint64_t *tmp, size_t n)
{
    uint64_t most = 0;
    for (size_t i = 0; i < n; i++)
        most |= keys[i];
    for (int shift = 0; shift < 64 && (most >> shift); shift += 11) {
        size_t count[2048] = {0};
        for (size_t i = 0; i < n; i++)
            count[(keys[i] >> shift) & 2047]++;
        size_t at = 0;
        for (int d = 0; d < 2048; d++) {
            size_t c = count[d];
            count[d] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(keys[i] >> shift) & 2047]++] = keys[i];
        memcpy(keys, tmp, n * sizeof(uint64_t));
    }
}

typedef struct {
    int flags_fd, cgroup_fd;
    uint64_t *keys, *pfns, *flags, *groups, *scratch;
    size_t n;  /* frames gathered, not yet looked up: keys[k] = PFN << 9 | top bits */
    Histogram h;
} FrameWalk;

/* Look up the gathered frames' flags (and cgroups) and count them.  -1: errno set.
 * The frames are looked up in PFN order (sorted with their top bits: the histogram
 * does not care about the order), so nearby frames are one read: a process's pages
 * in address order sit on frames all over memory, in PFN order mostly in runs. */
static int flush_frames(FrameWalk *w)
{
    if (w->n == 0)
        return 0;
    radix_sort(w->keys, w->flags, w->n);
    for (size_t k = 0; k < w->n; k++)
        w->pfns[k] = w->keys[k] >> 9;
    if (read_values(w->flags_fd, w->pfns, w->n, w->flags, w->scratch) < 0
        || (w->cgroup_fd >= 0 && read_values(w->cgroup_fd, w->pfns, w->n, w->groups, w->scratch) < 0))
        return -1;
    for (size_t k = 0; k < w->n; k++)
        if (hist_add(&w->h, 0, w->flags[k], (uint32_t)(w->keys[k] & 511), w->cgroup_fd >= 0 ? w->groups[k] : 0,
                     1) < 0) {
            errno = ENOMEM;
            return -1;
        }
    w->n = 0;
    return 0;
}

static PyObject *frame_histogram(PyObject *self, PyObject *args)
{
    Py_buffer raw = {0};
    unsigned int type_bits;
    unsigned long long marker_guard;
    PyObject *counts, *segments_obj = Py_None;
    FrameWalk w = {0};
    uint64_t *bounds = NULL;
    Py_ssize_t nbounds = 0;
    PyObject *result = NULL;
    int failed = 0, saved_errno = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*iiIKO!|O", &raw, &w.flags_fd, &w.cgroup_fd, &type_bits, &marker_guard,
                          &PyDict_Type, &counts, &segments_obj))
        return NULL;
    Py_ssize_t total = raw.len / 8;
    if (type_bits > 8) {
        PyErr_SetString(PyExc_ValueError, "type_bits must be at most 8");
        goto done;
    }
    if (segments_obj == Py_None) {
        bounds = PyMem_Malloc(2 * sizeof(uint64_t));
        if (bounds == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        bounds[0] = 0, bounds[1] = (uint64_t)total, nbounds = 1;
    } else if (segment_pairs(segments_obj, total, &bounds, &nbounds) < 0)
        goto done;
    if (!aligned(&raw, "raw"))
        goto done;
    w.keys = malloc(BLOCK * sizeof(uint64_t));
    w.pfns = malloc(BLOCK * sizeof(uint64_t));
    w.flags = malloc(BLOCK * sizeof(uint64_t));
    w.groups = malloc(BLOCK * sizeof(uint64_t));
    w.scratch = malloc((READ_MAX + RUN_GAP) * sizeof(uint64_t));
    if (!w.keys || !w.pfns || !w.flags || !w.groups || !w.scratch) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *entry = raw.buf;
    uint64_t type_mask = (1ULL << type_bits) - 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < nbounds && !failed; b++) {
        const uint64_t *e = entry + bounds[2 * b], *end = e + bounds[2 * b + 1];
        for (; e < end; e++) {
            uint64_t frame = *e & PM_PFRAME_MASK;
            uint32_t top = (uint32_t)(*e >> TOP_SHIFT);
            if ((*e & PM_PRESENT) && frame) {
                w.keys[w.n++] = frame << 9 | top;
                if (w.n == BLOCK && flush_frames(&w) < 0) {
                    failed = 1;
                    break;
                }
            } else if (*e & PM_SWAP) {
                uint32_t key = 1 + (uint32_t)(((frame & type_mask) << 1) | (((frame >> type_bits) & marker_guard) != 0));
                if (hist_add(&w.h, key, 0, top, 0, 1) < 0) {
                    errno = ENOMEM;
                    failed = 1;
                    break;
                }
            }
        }
    }
    if (!failed && flush_frames(&w) < 0)
        failed = 1;
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    if (failed) {
        if (saved_errno == ENOMEM)
            PyErr_NoMemory();
        else {
            errno = saved_errno;
            PyErr_SetFromErrno(PyExc_OSError);
        }
        goto done;
    }
    for (size_t i = 0; i < w.h.size; i++) {
        Slot *s = &w.h.slots[i];
        if (!s->used)
            continue;
        PyObject *key = Py_BuildValue("(IKIK)", s->kind, (unsigned long long)s->flags, s->top,
                                      (unsigned long long)s->cgroup);
        if (key == NULL)
            goto done;
        PyObject *old = PyDict_GetItemWithError(counts, key);
        PyObject *sum = NULL;
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            goto done;
        }
        if (old == NULL)
            sum = PyLong_FromUnsignedLongLong(s->count);
        else {
            PyObject *add = PyLong_FromUnsignedLongLong(s->count);
            sum = add ? PyNumber_Add(old, add) : NULL;
            Py_XDECREF(add);
        }
        if (sum == NULL || PyDict_SetItem(counts, key, sum) < 0) {
            Py_DECREF(key);
            Py_XDECREF(sum);
            goto done;
        }
        Py_DECREF(key);
        Py_DECREF(sum);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&raw);
    PyMem_Free(bounds);
    free(w.h.slots);
    free(w.keys);
    free(w.pfns);
    free(w.flags);
    free(w.groups);
    free(w.scratch);
    return result;
}

PyDoc_STRVAR(frame_runs_doc,
"frame_runs(raw, keep, flags_fd, count_fd)\n"
"--\n\n"
"Runs of pages with equal frame flags and map counts (pagewalk file).\n\n"
"raw: a buffer of u64 pagemap entries, one a page; keep: a buffer of a byte a page,\n"
"non-zero for the pages to look at.  Pages kept, present and with a PFN other than\n"
"0 have their kpageflags and kpagecount entries read (flags_fd, count_fd; 0 past the\n"
"end of memory); returns [(first page, pages, flags, map count)], runs of\n"
"consecutive such pages whose two values are equal.  Raises OSError where a read\n"
"fails.");

static PyObject *frame_runs(PyObject *self, PyObject *args)
{
    Py_buffer raw = {0}, keep = {0};
    int flags_fd, count_fd;
    uint64_t *pfns = NULL, *flags = NULL, *counts = NULL, *scratch = NULL;
    size_t *index = NULL;
    PyObject *result = NULL;
    int failed = 0, saved_errno = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*ii", &raw, &keep, &flags_fd, &count_fd))
        return NULL;
    size_t total = (size_t)raw.len / 8, n = 0;
    if (!aligned(&raw, "raw"))
        goto done;
    if ((size_t)keep.len != total) {
        PyErr_SetString(PyExc_ValueError, "keep must hold a byte for each entry");
        goto done;
    }
    pfns = malloc((total ? total : 1) * sizeof(uint64_t));
    flags = malloc((total ? total : 1) * sizeof(uint64_t));
    counts = malloc((total ? total : 1) * sizeof(uint64_t));
    index = malloc((total ? total : 1) * sizeof(size_t));
    scratch = malloc((READ_MAX + RUN_GAP) * sizeof(uint64_t));
    if (!pfns || !flags || !counts || !index || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *entry = raw.buf;
    const unsigned char *wanted = keep.buf;
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i < total; i++)
        if (wanted[i] && (entry[i] & PM_PRESENT) && (entry[i] & PM_PFRAME_MASK)) {
            pfns[n] = entry[i] & PM_PFRAME_MASK;
            index[n++] = i;
        }
    if (read_values(flags_fd, pfns, n, flags, scratch) < 0 || read_values(count_fd, pfns, n, counts, scratch) < 0)
        failed = 1, saved_errno = errno;
    Py_END_ALLOW_THREADS
    if (failed) {
        errno = saved_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    for (size_t k = 0; k < n;) {
        size_t j = k + 1;
        while (j < n && index[j] == index[j - 1] + 1 && flags[j] == flags[k] && counts[j] == counts[k])
            j++;
        PyObject *run = Py_BuildValue("(nnKK)", (Py_ssize_t)index[k], (Py_ssize_t)(j - k),
                                      (unsigned long long)flags[k], (unsigned long long)counts[k]);
        if (run == NULL || PyList_Append(result, run) < 0) {
            Py_XDECREF(run);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(run);
        k = j;
    }
done:
    PyBuffer_Release(&raw);
    PyBuffer_Release(&keep);
    free(pfns);
    free(flags);
    free(counts);
    free(index);
    free(scratch);
    return result;
}

PyDoc_STRVAR(find_frames_doc,
"find_frames(raw, targets, segments)\n"
"--\n\n"
"Where frames are mapped (pagewalk who): the indices of the entries of raw (a\n"
"buffer of u64 pagemap entries) inside segments ((first entry, entries) pairs)\n"
"that are present with a PFN in targets (a buffer of sorted u64 PFNs).");

static PyObject *find_frames(PyObject *self, PyObject *args)
{
    Py_buffer raw = {0}, targets = {0};
    PyObject *segments_obj, *result = NULL;
    uint64_t *bounds = NULL;
    Py_ssize_t nbounds = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*O", &raw, &targets, &segments_obj))
        return NULL;
    const uint64_t *entry = raw.buf, *pfn = targets.buf;
    Py_ssize_t total = raw.len / 8, ntargets = targets.len / 8;
    if (!aligned(&raw, "raw") || !aligned(&targets, "targets") || segment_pairs(segments_obj, total, &bounds,
                                                                                 &nbounds) < 0)
        goto done;
    if ((result = PyList_New(0)) == NULL)
        goto done;
    for (Py_ssize_t s = 0; s < nbounds; s++) {
        for (uint64_t i = bounds[2 * s]; i < bounds[2 * s] + bounds[2 * s + 1]; i++) {
            if (!(entry[i] & PM_PRESENT))
                continue;
            uint64_t frame = entry[i] & PM_PFRAME_MASK;
            Py_ssize_t lo = 0, hi = ntargets;  /* binary search: a few frames asked, many pages */
            while (lo < hi) {
                Py_ssize_t mid = (lo + hi) / 2;
                if (pfn[mid] < frame)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < ntargets && pfn[lo] == frame) {
                PyObject *index = PyLong_FromSsize_t((Py_ssize_t)i);
                if (index == NULL || PyList_Append(result, index) < 0) {
                    Py_XDECREF(index);
                    Py_CLEAR(result);
                    goto done;
                }
                Py_DECREF(index);
            }
        }
    }
done:
    PyMem_Free(bounds);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&targets);
    return result;
}

PyDoc_STRVAR(value_counts_doc,
"value_counts(raw, counts, groups=None)\n"
"--\n\n"
"Count the distinct u64 values of the buffer raw into the dict counts ({value: n}):\n"
"kpageflags of the whole machine hold a few hundred distinct values among millions\n"
"of frames (pagewalk ram), so the caller applies its rules to each value once.\n"
"With groups (a buffer of as many u64: each frame's cgroup), count distinct pairs\n"
"({(value, group): n}).");

static PyObject *value_counts(PyObject *self, PyObject *args)
{
    Py_buffer raw = {0}, groups = {0};
    PyObject *counts, *groups_arg = Py_None, *result = NULL;
    Histogram h = {0};
    int failed = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!|O", &raw, &PyDict_Type, &counts, &groups_arg))
        return NULL;
    if (!aligned(&raw, "raw"))
        goto done;
    int paired = groups_arg != Py_None;
    if (paired) {
        if (PyObject_GetBuffer(groups_arg, &groups, PyBUF_SIMPLE) < 0)
            goto done;
        if (!aligned(&groups, "groups"))
            goto done;
        if (groups.len != raw.len) {
            PyErr_SetString(PyExc_ValueError, "groups must hold as many u64 as raw");
            goto done;
        }
    }
    const uint64_t *v = raw.buf, *g = paired ? groups.buf : NULL;
    size_t n = (size_t)raw.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i < n && !failed;) {
        size_t j = i + 1;
        /* runs of equal values (free memory, holes) count as one */
        while (j < n && v[j] == v[i] && (g == NULL || g[j] == g[i]))
            j++;
        failed = hist_add(&h, 0, v[i], 0, g ? g[i] : 0, j - i) < 0;
        i = j;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < h.size; i++) {
        if (!h.slots[i].used)
            continue;
        PyObject *key = paired ? Py_BuildValue("(KK)", (unsigned long long)h.slots[i].flags,
                                               (unsigned long long)h.slots[i].cgroup)
                               : PyLong_FromUnsignedLongLong(h.slots[i].flags);
        PyObject *old = key ? PyDict_GetItemWithError(counts, key) : NULL;
        PyObject *add = key && (old || !PyErr_Occurred()) ? PyLong_FromUnsignedLongLong(h.slots[i].count) : NULL;
        PyObject *sum = add == NULL ? NULL : old ? PyNumber_Add(old, add) : (Py_INCREF(add), add);
        int bad = sum == NULL || PyDict_SetItem(counts, key, sum) < 0;
        Py_XDECREF(key);
        Py_XDECREF(add);
        Py_XDECREF(sum);
        if (bad)
            goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&raw);
    if (groups.obj != NULL)
        PyBuffer_Release(&groups);
    free(h.slots);
    return result;
}

static PyMethodDef methods[] = {
    {"count_entries", count_entries, METH_VARARGS, count_entries_doc},
    {"frame_histogram", frame_histogram, METH_VARARGS, frame_histogram_doc},
    {"find_entry", find_entry, METH_VARARGS, find_entry_doc},
    {"frame_runs", frame_runs, METH_VARARGS, frame_runs_doc},
    {"find_frames", find_frames, METH_VARARGS, find_frames_doc},
    {"value_counts", value_counts, METH_VARARGS, value_counts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pagewalk.native",
    "The per-page loops of the everyday commands, in C (see native.c): no page rule\n"
    "is decided here; the callers pass tables filled in by pagewalk.core.states.",
    -1, methods,
};

PyMODINIT_FUNC PyInit_native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *all = Py_BuildValue("[ssssss]", "count_entries", "frame_histogram", "find_entry", "frame_runs", "find_frames",
                                  "value_counts");
    if (all == NULL || PyModule_AddObject(m, "__all__", all) < 0) {
        Py_XDECREF(all);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
