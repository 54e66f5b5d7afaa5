;; `_ptc_mem`: a CPython extension module written as a wasm shared library.
;;
;; It gives the guest what CPython cannot find out for itself:
;;   pages()        the size of its linear memory (`memory.size`), which is the
;;                  execution's peak memory use, since wasm memory never shrinks;
;;   stack_pointer() the C (shadow) stack pointer, for measuring stack use;
;;   c_stack(size)  set how deep CPython lets C code recurse before it raises
;;                  RecursionError: `size` bytes of C stack below its top.
;; componentize-py links it like any native extension
;; (`*.cpython-314-wasm32-wasi.so`); the build turns this text into that file
;; with wasmtime's `wat2wasm`, so no wasm C toolchain is needed.
;;
;; Why c_stack: wasm has two stacks. CPython 3.14 guards C recursion by the
;; address of a local variable, which lives on the shadow stack in linear
;; memory, and assumes 4 MB of it; but each C frame also takes a frame of the
;; engine's native wasm stack (Limits: ptc.engine.MAX_WASM_STACK), which ends
;; far sooner, in a trap. Lowering CPython's soft limit makes deep recursion in
;; C (repr, ==, json, deepcopy of deep data) a RecursionError the program can
;; catch. CPython 3.14.0 has no API for it (PyUnstable_ThreadState_SetStack-
;; Protection came in 3.14.1), so c_stack finds the three fields
;; (c_stack_top, c_stack_soft_limit, c_stack_hard_limit, consecutive in
;; _PyThreadStateImpl) by their invariant: hard = soft - 8192 (two thousand
;; pointers of margin), top > soft; it returns the top it found, or 0.
;;
;; Layout (CPython 3.14, wasm32, default build; all fields 4 bytes):
;;   0  PyModuleDef: ob_refcnt, ob_type, m_init, m_index, m_copy,
;;      20 m_name, 24 m_doc, 28 m_size, 32 m_methods, 36 m_slots,
;;      40 m_traverse, 44 m_clear, 48 m_free
;;   52, 68, 84 PyMethodDef[0..2]: ml_name, ml_meth, ml_flags, ml_doc
;;   100 PyMethodDef[3]: the zeroed sentinel
;;   116 "_ptc_mem\0"   125 "pages\0"   131 "c_stack\0"   139 "stack_pointer\0"
;; Pointers in the data are relative to __memory_base, so PyInit fills them in.
(module
  (@dylink.0 (mem-info (memory 160 2) (table 3 0)))
  (import "env" "memory" (memory 0))
  (import "env" "__indirect_function_table" (table 0 funcref))
  (import "env" "__memory_base" (global $base i32))
  (import "env" "__table_base" (global $table i32))
  (import "env" "__stack_pointer" (global $sp (mut i32)))
  (import "env" "PyModule_Create2" (func $create (param i32 i32) (result i32)))
  (import "env" "PyLong_FromLong" (func $long (param i32) (result i32)))
  (import "env" "PyLong_AsLong" (func $as_long (param i32) (result i32)))
  (import "env" "PyThreadState_Get" (func $tstate (result i32)))

  ;; ob_refcnt 0x50000000: immortal on 32-bit CPython 3.14 (>= 1 << 30).
  (data (global.get $base) "\00\00\00\50\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00_ptc_mem\00pages\00c_stack\00stack_pointer\00")

  ;; pages() -> int: linear memory size in 64 KiB pages (METH_NOARGS).
  (func $pages (param $self i32) (param $unused i32) (result i32)
    (call $long (memory.size)))

  ;; c_stack(size) -> int: the C stack's top, or 0 if the fields were not found (METH_O).
  (func $c_stack (param $self i32) (param $arg i32) (result i32)
    (local $state i32) (local $at i32) (local $end i32) (local $size i32) (local $top i32)
    (local.set $size (call $as_long (local.get $arg)))
    (local.set $state (call $tstate))
    (local.set $at (local.get $state))
    (local.set $end (i32.add (local.get $state) (i32.const 4096)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $top (i32.load (local.get $at)))
        (if (i32.and
              (i32.eq (i32.sub (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at)))
                      (i32.const 8192))
              (i32.and
                (i32.gt_u (local.get $top) (i32.load offset=4 (local.get $at)))
                (i32.gt_u (local.get $top) (local.get $size))))
          (then
            (i32.store offset=4 (local.get $at) (i32.sub (local.get $top) (local.get $size)))
            (i32.store offset=8 (local.get $at) (i32.sub (i32.sub (local.get $top) (local.get $size)) (i32.const 8192)))
            (return (call $long (local.get $top)))))
        (local.set $at (i32.add (local.get $at) (i32.const 4)))
        (br $scan)))
    (call $long (i32.const 0)))

  ;; stack_pointer() -> int: the shadow stack pointer (METH_NOARGS).
  (func $stack_pointer (param $self i32) (param $unused i32) (result i32)
    (call $long (global.get $sp)))

  (elem (global.get $table) func $pages $c_stack $stack_pointer)

  (func (export "PyInit__ptc_mem") (result i32)
    (local $def i32)
    (local.set $def (global.get $base))
    (i32.store offset=20 (local.get $def) (i32.add (local.get $def) (i32.const 116)))  ;; m_name
    (i32.store offset=28 (local.get $def) (i32.const -1))                              ;; m_size
    (i32.store offset=32 (local.get $def) (i32.add (local.get $def) (i32.const 52)))   ;; m_methods
    ;; pages: METH_NOARGS (4)
    (i32.store offset=52 (local.get $def) (i32.add (local.get $def) (i32.const 125)))
    (i32.store offset=56 (local.get $def) (global.get $table))
    (i32.store offset=60 (local.get $def) (i32.const 4))
    ;; c_stack: METH_O (8)
    (i32.store offset=68 (local.get $def) (i32.add (local.get $def) (i32.const 131)))
    (i32.store offset=72 (local.get $def) (i32.add (global.get $table) (i32.const 1)))
    (i32.store offset=76 (local.get $def) (i32.const 8))
    ;; stack_pointer: METH_NOARGS (4)
    (i32.store offset=84 (local.get $def) (i32.add (local.get $def) (i32.const 139)))
    (i32.store offset=88 (local.get $def) (i32.add (global.get $table) (i32.const 2)))
    (i32.store offset=92 (local.get $def) (i32.const 4))
    (call $create (local.get $def) (i32.const 1013)))                                  ;; PYTHON_API_VERSION
)
