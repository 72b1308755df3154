/*
 * alloccount: count every allocation made between start() and stop().
 *
 * Counted: CPython's three allocator domains (raw, mem, object) and NumPy's data
 * buffers (its PyDataMem handler). The hooks forward to the allocators they replace
 * and are installed only between start() and stop(), so nothing is paid while
 * stopped. A block that pymalloc (object/mem domain) hands on to the raw allocator
 * is one allocation: a thread-local depth flag keeps the raw hook from counting it
 * again. Frees are not counted, nor is start()/stop()'s own work (the count runs
 * only between them). The same call gives the same count every run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

static unsigned long long count = 0;
static int running = 0;
static _Thread_local int inside = 0;

typedef struct {
    PyMemAllocatorEx original;
    PyMemAllocatorDomain domain;
} Hook;

static Hook hooks[3];

static void *hook_malloc(void *ctx, size_t size) {
    Hook *hook = (Hook *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = hook->original.malloc(hook->original.ctx, size);
    inside--;
    return ptr;
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize) {
    Hook *hook = (Hook *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = hook->original.calloc(hook->original.ctx, nelem, elsize);
    inside--;
    return ptr;
}

static void *hook_realloc(void *ctx, void *old, size_t size) {
    Hook *hook = (Hook *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = hook->original.realloc(hook->original.ctx, old, size);
    inside--;
    return ptr;
}

static void hook_free(void *ctx, void *ptr) {
    Hook *hook = (Hook *)ctx;
    inside++;
    hook->original.free(hook->original.ctx, ptr);
    inside--;
}

/* NumPy's data buffers: a handler that counts and forwards to the default one. */
static PyObject *numpy_default = NULL; /* capsule of the handler we forward to */
static PyObject *numpy_counting = NULL; /* capsule of ours */
static PyObject *numpy_previous = NULL; /* what start() replaced */

static PyDataMem_Handler *forward_to(void) {
    return (PyDataMem_Handler *)PyCapsule_GetPointer(numpy_default, "mem_handler");
}

static void *np_malloc(void *ctx, size_t size) {
    PyDataMem_Handler *h = (PyDataMem_Handler *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = h->allocator.malloc(h->allocator.ctx, size);
    inside--;
    return ptr;
}

static void *np_calloc(void *ctx, size_t nelem, size_t elsize) {
    PyDataMem_Handler *h = (PyDataMem_Handler *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = h->allocator.calloc(h->allocator.ctx, nelem, elsize);
    inside--;
    return ptr;
}

static void *np_realloc(void *ctx, void *old, size_t size) {
    PyDataMem_Handler *h = (PyDataMem_Handler *)ctx;
    if (running && !inside) __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    inside++;
    void *ptr = h->allocator.realloc(h->allocator.ctx, old, size);
    inside--;
    return ptr;
}

static void np_free(void *ctx, void *ptr, size_t size) {
    PyDataMem_Handler *h = (PyDataMem_Handler *)ctx;
    inside++;
    h->allocator.free(h->allocator.ctx, ptr, size);
    inside--;
}

static PyDataMem_Handler counting_handler = {
    "fleetwatch_alloccount", 1, {NULL, np_malloc, np_calloc, np_realloc, np_free},
};

static PyObject *start(PyObject *self, PyObject *args) {
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "alloccount is already running");
        return NULL;
    }
    count = 0;
    PyMemAllocatorDomain domains[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
    for (int i = 0; i < 3; i++) {
        hooks[i].domain = domains[i];
        PyMem_GetAllocator(domains[i], &hooks[i].original);
        PyMemAllocatorEx alloc = {&hooks[i], hook_malloc, hook_calloc, hook_realloc, hook_free};
        PyMem_SetAllocator(domains[i], &alloc);
    }
    numpy_previous = PyDataMem_SetHandler(numpy_counting);
    running = 1;
    if (numpy_previous == NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *args) {
    if (!running) {
        PyErr_SetString(PyExc_RuntimeError, "alloccount is not running");
        return NULL;
    }
    running = 0;
    unsigned long long counted = count;
    for (int i = 2; i >= 0; i--) {
        PyMem_SetAllocator(hooks[i].domain, &hooks[i].original);
    }
    PyObject *replaced = PyDataMem_SetHandler(numpy_previous);
    Py_XDECREF(replaced);
    Py_CLEAR(numpy_previous);
    return PyLong_FromUnsignedLongLong(counted);
}

/* Calls a callable and returns what it returns. Its one purpose is its name: valgrind
 * --tool=callgrind --toggle-collect=alloccount_measured --dump-after=alloccount_measured
 * counts the instructions of just this call, one dump per call. Not static and never
 * inlined, so callgrind finds the symbol. */
__attribute__((noinline)) PyObject *alloccount_measured(PyObject *self, PyObject *callable) {
    return PyObject_CallNoArgs(callable);
}

static PyMethodDef methods[] = {
    {"start", start, METH_NOARGS, "Start counting allocations (from zero)."},
    {"stop", stop, METH_NOARGS, "Stop counting; return the allocations since start()."},
    {"measured", alloccount_measured, METH_O,
     "Call f() and return its result; under callgrind, the span whose instructions count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "alloccount",
    "Exact allocation counts: CPython's raw, mem and object domains and NumPy data.",
    -1, methods,
};

PyMODINIT_FUNC PyInit_alloccount(void) {
    import_array();
    numpy_default = PyDataMem_GetHandler();
    if (numpy_default == NULL) {
        return NULL;
    }
    counting_handler.allocator.ctx = forward_to();
    numpy_counting = PyCapsule_New(&counting_handler, "mem_handler", NULL);
    if (numpy_counting == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
