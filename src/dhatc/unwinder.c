/* dhatc._unwinder: native stacks for Profiler(native=True).
 *
 * Two halves, used at two different moments:
 *  - capture, inside the allocator hooks: libunwind's local unwinding, handed
 *    to the engine as a C function in a capsule (unwinder_api.h), so that the
 *    engine never links libunwind itself;
 *  - naming, when the file is written: elfutils' libdwfl turns an address of
 *    a given object file, loaded at a given bias, into its function, source
 *    file and line, and the functions inlined there.  It reads the files on
 *    disk, so objects unloaded with dlclose during the profile are named as
 *    well as loaded ones.
 *
 * A C signal handler's stack goes on through the signal frame: libunwind
 * steps from the trampoline the handler returns to (glibc's __restore_rt,
 * whose unwind information marks it as a signal frame) into the frame the
 * signal interrupted, from the registers the kernel saved.  Neither of those
 * two addresses is a return address: symbolize() names them as they are.
 *
 * libunwind also defines the _Unwind_* functions that C++ exceptions use.
 * This module is loaded like every extension (RTLD_LOCAL), so those stay in
 * its own lookup scope and never replace libgcc's for other libraries. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "unwinder_api.h"

/* ---- capture ------------------------------------------------------------ */

static int capture(void **ips, int room)
{
    return unw_backtrace(ips, room);
}

static const dhatc_unwinder_api_t api = {
    .abi = DHATC_UNWINDER_ABI,
    .backtrace = capture,
};

/* ---- naming ------------------------------------------------------------- */

static char *debuginfo_path = NULL; /* libdwfl's default places */

static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

/* The functions (DWARF's subprograms) of one compilation unit, by address:
 * where an address's inlined calls are found without searching the whole
 * unit's tree for each address. */
typedef struct {
    Dwarf_Addr start, end; /* one range of the function's code */
    Dwarf_Die die;
} function_range_t;

typedef struct {
    Dwarf_CU *cu;
    function_range_t *ranges; /* sorted by start */
    size_t count;
} unit_functions_t;

/* A session of libdwfl holding the object files named so far (reported
 * once each: reporting a module again does not give it back), and the
 * functions of the compilation units looked into so far. */
enum { NAMER_MODULES = 256 };

typedef struct {
    Dwfl *dwfl;
    uint32_t count;
    struct {
        char *path;
        GElf_Addr bias;
        Dwfl_Module *module; /* NULL: the file could not be read */
    } modules[NAMER_MODULES];
    unit_functions_t *units;
    size_t unit_count, unit_room;
} namer_t;

static void namer_close(namer_t *namer)
{
    for (uint32_t i = 0; i < namer->count; i++) {
        PyMem_Free(namer->modules[i].path);
    }
    for (size_t i = 0; i < namer->unit_count; i++) {
        PyMem_Free(namer->units[i].ranges);
    }
    PyMem_Free(namer->units);
    dwfl_end(namer->dwfl);
}

static int namer_open(namer_t *namer)
{
    namer->count = 0;
    namer->units = NULL;
    namer->unit_count = namer->unit_room = 0;
    namer->dwfl = dwfl_begin(&offline_callbacks);
    if (namer->dwfl == NULL) {
        PyErr_Format(PyExc_RuntimeError, "libdwfl: %s", dwfl_errmsg(-1));
        return -1;
    }
    return 0;
}

/* The module of `path` loaded at `bias`, reported on first use.  NULL when
 * the file cannot be read (gone, not ELF): its addresses stay unnamed. */
static Dwfl_Module *namer_module(namer_t *namer, const char *path, GElf_Addr bias)
{
    for (uint32_t i = 0; i < namer->count; i++) {
        if (namer->modules[i].bias == bias && strcmp(namer->modules[i].path, path) == 0) {
            return namer->modules[i].module;
        }
    }
    /* report_begin_add: keep the modules reported before. */
    dwfl_report_begin_add(namer->dwfl);
    Dwfl_Module *module = dwfl_report_elf(namer->dwfl, path, path, -1, bias, true);
    dwfl_report_end(namer->dwfl, NULL, NULL);
    size_t length = strlen(path) + 1;
    char *copy = namer->count < NAMER_MODULES ? PyMem_Malloc(length) : NULL;
    if (copy != NULL) {
        memcpy(copy, path, length);
        namer->modules[namer->count].path = copy;
        namer->modules[namer->count].bias = bias;
        namer->modules[namer->count].module = module;
        namer->count++;
    }
    return module;
}

/* Whether `address` of `module` lies in a signal frame: the code a signal
 * handler returns to, which the kernel called by making it the handler's
 * return address (glibc's __restore_rt).  Its unwind information says so
 * ('S'); it covers the byte before the code, where a return address's call
 * would be, as unwinders look there. */
static bool in_signal_frame(Dwfl_Module *module, GElf_Addr address)
{
    /* .eh_frame, loaded with the code; else .debug_frame. */
    for (int i = 0; i < 2; i++) {
        Dwarf_Addr bias = 0;
        Dwarf_CFI *table = i == 0 ? dwfl_module_eh_cfi(module, &bias)
                                  : dwfl_module_dwarf_cfi(module, &bias);
        Dwarf_Frame *frame;
        if (table != NULL && dwarf_cfi_addrframe(table, address - bias, &frame) == 0) {
            bool signal = false;
            dwarf_frame_info(frame, NULL, NULL, &signal);
            free(frame);
            return signal;
        }
    }
    return false;
}

/* Where an address is: the function, source file and line, as a tuple. */
static PyObject *place(const char *function, const char *file, int line)
{
    return Py_BuildValue("(zzi)", function, file, file != NULL ? line : 0);
}

/* Grows `*array` (of `*room` items of `size` bytes) to hold `count + 1`. */
static int make_room(void **array, size_t *room, size_t count, size_t size)
{
    if (count < *room) {
        return 0;
    }
    size_t wanted = *room > 0 ? 2 * *room : 16;
    void *grown = wanted <= PY_SSIZE_T_MAX / size ? PyMem_Realloc(*array, wanted * size) : NULL;
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = grown;
    *room = wanted;
    return 0;
}

typedef struct {
    function_range_t *ranges;
    size_t count, room;
} range_list_t;

/* The ranges of the functions defined under `parent` (a unit, a namespace). */
static int add_functions(range_list_t *list, Dwarf_Die *parent, int depth)
{
    Dwarf_Die child;
    if (depth > 16 || dwarf_child(parent, &child) != 0) {
        return 0;
    }
    do {
        int tag = dwarf_tag(&child);
        if (tag == DW_TAG_namespace || tag == DW_TAG_module) {
            if (add_functions(list, &child, depth + 1) < 0) {
                return -1;
            }
        } else if (tag == DW_TAG_subprogram) {
            Dwarf_Addr base, start, end;
            ptrdiff_t next = 0;
            while ((next = dwarf_ranges(&child, next, &base, &start, &end)) > 0) {
                void *array = list->ranges;
                if (make_room(&array, &list->room, list->count, sizeof(function_range_t)) < 0) {
                    return -1;
                }
                list->ranges = array;
                list->ranges[list->count++] = (function_range_t){start, end, child};
            }
        }
    } while (dwarf_siblingof(&child, &child) == 0);
    return 0;
}

static int by_start(const void *a, const void *b)
{
    Dwarf_Addr x = ((const function_range_t *)a)->start, y = ((const function_range_t *)b)->start;
    return (x > y) - (x < y);
}

/* The functions of the unit `cu`, listed on first use.  NULL with a Python
 * error set if memory runs out. */
static const unit_functions_t *unit_functions(namer_t *namer, Dwarf_Die *cu)
{
    for (size_t i = namer->unit_count; i-- > 0;) { /* the newest first: addresses come sorted */
        if (namer->units[i].cu == cu->cu) {
            return &namer->units[i];
        }
    }
    range_list_t list = {NULL, 0, 0};
    void *units = namer->units;
    if (add_functions(&list, cu, 0) < 0 ||
        make_room(&units, &namer->unit_room, namer->unit_count, sizeof(unit_functions_t)) < 0) {
        PyMem_Free(list.ranges);
        return NULL;
    }
    namer->units = units;
    if (list.count > 0) {
        qsort(list.ranges, list.count, sizeof list.ranges[0], by_start);
    }
    unit_functions_t *unit = &namer->units[namer->unit_count++];
    *unit = (unit_functions_t){cu->cu, list.ranges, list.count};
    return unit;
}

/* The function of `unit` whose code holds `pc`, or NULL. */
static const Dwarf_Die *function_at(const unit_functions_t *unit, Dwarf_Addr pc)
{
    size_t low = 0, high = unit->count; /* the first range starting after pc */
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (unit->ranges[middle].start <= pc) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low > 0 && pc < unit->ranges[low - 1].end ? &unit->ranges[low - 1].die : NULL;
}

/* An inlined function's name: its linkage name where it has one (C++: the
 * mangled name, demangled as the symbols are), else its name. */
static const char *inlined_name(Dwarf_Die *die)
{
    Dwarf_Attribute attribute;
    const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attribute));
    if (name == NULL) {
        name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attribute));
    }
    return name != NULL ? name : dwarf_diename(die);
}

enum { MAX_SCOPES = 64 };

/* The scopes of `function` that hold `pc`, as the code nests them (the
 * inlined calls, the blocks), outermost first, `function` itself in
 * scopes[0].  Returns how many. */
static int scopes_at(const Dwarf_Die *function, Dwarf_Addr pc, Dwarf_Die *scopes)
{
    int count = 0;
    scopes[count++] = *function;
    while (count < MAX_SCOPES) {
        Dwarf_Die child;
        bool found = false;
        if (dwarf_child(&scopes[count - 1], &child) != 0) {
            break;
        }
        do {
            int tag = dwarf_tag(&child);
            found = (tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block ||
                     tag == DW_TAG_try_block || tag == DW_TAG_catch_block) &&
                    dwarf_haspc(&child, pc) == 1;
        } while (!found && dwarf_siblingof(&child, &child) == 0);
        if (!found) {
            break;
        }
        scopes[count++] = child;
    }
    return count;
}

/* The places of `address` of `module`, innermost first, into the list
 * `out`: one per function inlined there (DWARF's inlined subroutines, each
 * at the line the line table or the inner one's call gives), then the
 * function the symbol table names, at the call of the outermost inlined one.
 * -1 with a Python error set if memory runs out. */
static int places(namer_t *namer, Dwfl_Module *module, GElf_Addr address, PyObject *out)
{
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *found = dwfl_module_getsrc(module, address);
    if (found != NULL) {
        file = dwfl_lineinfo(found, NULL, &line, NULL, NULL, NULL);
    }
    Dwarf_Addr bias;
    Dwarf_Die *cu = dwfl_module_addrdie(module, address, &bias);
    const unit_functions_t *unit = cu != NULL ? unit_functions(namer, cu) : NULL;
    if (cu != NULL && unit == NULL) {
        return -1;
    }
    const Dwarf_Die *function = unit != NULL ? function_at(unit, address - bias) : NULL;
    static Dwarf_Die scopes[MAX_SCOPES]; /* with the GIL, one call at a time */
    int count = function != NULL ? scopes_at(function, address - bias, scopes) : 0;
    Dwarf_Files *files = NULL;
    int status = 0;
    for (int i = count; i-- > 1 && status == 0;) {
        if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine) {
            continue; /* a block */
        }
        PyObject *inlined = place(inlined_name(&scopes[i]), file, line);
        status = inlined != NULL ? PyList_Append(out, inlined) : -1;
        Py_XDECREF(inlined);
        /* The function around it is at its call. */
        Dwarf_Attribute attribute;
        Dwarf_Word value;
        file = NULL;
        line = 0;
        if (files == NULL && dwarf_getsrcfiles(cu, &files, NULL) != 0) {
            files = NULL;
        }
        if (files != NULL &&
            dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attribute), &value) == 0) {
            file = dwarf_filesrc(files, (size_t)value, NULL, NULL);
        }
        if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attribute), &value) == 0) {
            line = (int)value;
        }
    }
    if (status == 0) {
        PyObject *outer = place(dwfl_module_addrname(module, address), file, line);
        status = outer != NULL ? PyList_Append(out, outer) : -1;
        Py_XDECREF(outer);
    }
    return status;
}

/* One request of symbolize(): (signal frame, places). */
static PyObject *name_one(namer_t *namer, unsigned long long address, const char *path,
                          unsigned long long bias, int exact)
{
    Dwfl_Module *module = namer_module(namer, path, (GElf_Addr)bias);
    PyObject *found = PyList_New(0);
    if (found == NULL) {
        return NULL;
    }
    bool signal = false;
    GElf_Addr named = (GElf_Addr)address;
    if (module != NULL && !exact && address > 0) {
        signal = in_signal_frame(module, named - 1);
        named -= !signal;
    }
    if (module == NULL) {
        PyObject *unknown = place(NULL, NULL, 0);
        if (unknown == NULL || PyList_Append(found, unknown) < 0) {
            Py_XDECREF(unknown);
            Py_DECREF(found);
            return NULL;
        }
        Py_DECREF(unknown);
    } else if (places(namer, module, named, found) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    return Py_BuildValue("(ON)", signal ? Py_True : Py_False, found);
}

PyDoc_STRVAR(symbolize_doc,
             "symbolize(requests)\n--\n\n"
             "Names native addresses.  Each request is (address, path of the object file, load "
             "bias, exact): a frame's address as the unwinder found it.  Unless `exact`, that is "
             "a return address, named by the call before it (address - 1) -- except where that "
             "byte lies in a signal frame (the code a signal handler returns to: no call "
             "precedes it), named at the address itself.  `exact`: an address a signal "
             "interrupted, named as it is.  Returns, per request, (signal frame, places): "
             "places are (function or None, source file or None, line or 0), one per function "
             "inlined at the address, innermost first, then the function holding it.  Reads the "
             "files on disk (and their separate debug information where installed).");

static PyObject *symbolize(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *items = PySequence_Fast(arg, "symbolize() takes a sequence of requests");
    if (items == NULL) {
        return NULL;
    }
    static namer_t namer; /* large; with the GIL, one call at a time */
    if (namer_open(&namer) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        unsigned long long address, bias;
        const char *path;
        int exact;
        PyObject *named = NULL;
        if (PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i),
                             "KsKp;symbolize() takes (address, path, bias, exact) requests",
                             &address, &path, &bias, &exact)) {
            named = name_one(&namer, address, path, bias, exact);
        }
        if (named == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, named);
    }
    namer_close(&namer);
    Py_DECREF(items);
    return result;
}

PyDoc_STRVAR(function_ranges_doc,
             "function_ranges(path, bias, name)\n--\n\n"
             "The address ranges [start, end) of function `name` in the object file at `path` "
             "loaded at `bias`, with the parts the compiler split off (name.cold, name.part.N): "
             "a list of (start, end) pairs, empty if the file has no such symbol.");

static PyObject *function_ranges(PyObject *module, PyObject *args)
{
    (void)module;
    const char *path, *name;
    unsigned long long bias;
    if (!PyArg_ParseTuple(args, "sKs:function_ranges", &path, &bias, &name)) {
        return NULL;
    }
    static namer_t namer;
    if (namer_open(&namer) < 0) {
        return NULL;
    }
    PyObject *result = PyList_New(0);
    Dwfl_Module *found = namer_module(&namer, path, (GElf_Addr)bias);
    int count = found != NULL ? dwfl_module_getsymtab(found) : 0;
    size_t length = strlen(name);
    for (int i = 0; result != NULL && i < count; i++) {
        GElf_Sym symbol;
        GElf_Addr address;
        const char *symbol_name =
            dwfl_module_getsym_info(found, i, &symbol, &address, NULL, NULL, NULL);
        if (symbol_name == NULL || GELF_ST_TYPE(symbol.st_info) != STT_FUNC ||
            strncmp(symbol_name, name, length) != 0 ||
            (symbol_name[length] != '\0' && symbol_name[length] != '.') || symbol.st_size == 0) {
            continue;
        }
        PyObject *range = Py_BuildValue("(KK)", (unsigned long long)address,
                                        (unsigned long long)(address + symbol.st_size));
        if (range == NULL || PyList_Append(result, range) < 0) {
            Py_XDECREF(range);
            Py_CLEAR(result);
        } else {
            Py_DECREF(range);
        }
    }
    namer_close(&namer);
    return result;
}

PyDoc_STRVAR(function_holding_doc,
             "function_holding(address)\n--\n\n"
             "The address range [start, end) of the function whose C frame, on the caller's "
             "native stack now, holds `address` (a local variable of it), from the unwind "
             "information (no symbol needed); None if no frame does.");

static PyObject *function_holding(PyObject *module, PyObject *arg)
{
    (void)module;
    unsigned long long address = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        return NULL;
    }
    unw_context_t context;
    unw_cursor_t cursor;
    if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) {
        Py_RETURN_NONE;
    }
    /* A frame's locals lie between its stack pointer and its caller's. */
    unw_word_t sp;
    unw_get_reg(&cursor, UNW_REG_SP, &sp);
    for (int depth = 0; depth < 512; depth++) {
        unw_proc_info_t info;
        int have_info = unw_get_proc_info(&cursor, &info) == 0;
        if (unw_step(&cursor) <= 0) {
            break;
        }
        unw_word_t caller_sp;
        unw_get_reg(&cursor, UNW_REG_SP, &caller_sp);
        if (sp <= address && address < caller_sp) {
            if (!have_info || info.start_ip >= info.end_ip) {
                break;
            }
            return Py_BuildValue("(KK)", (unsigned long long)info.start_ip,
                                 (unsigned long long)info.end_ip);
        }
        sp = caller_sp;
    }
    Py_RETURN_NONE;
}

static PyMethodDef unwinder_methods[] = {
    {"function_holding", function_holding, METH_O, function_holding_doc},
    {"symbolize", symbolize, METH_O, symbolize_doc},
    {"function_ranges", function_ranges, METH_VARARGS, function_ranges_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef unwinder_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dhatc._unwinder",
    .m_doc = "Native stacks for dhatc: libunwind to capture them, libdwfl to name them.",
    .m_size = -1,
    .m_methods = unwinder_methods,
};

PyMODINIT_FUNC PyInit__unwinder(void)
{
    /* Per-thread caches: no lock shared by threads that unwind at once. */
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    PyObject *module = PyModule_Create(&unwinder_module);
    if (module == NULL) {
        return NULL;
    }
    PyObject *capsule = PyCapsule_New((void *)&api, DHATC_UNWINDER_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(module, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
