;; `_ptc_mem`: a CPython extension module written as a wasm shared library.
;;
;; It gives the guest the one fact CPython cannot: the size of its linear
;; memory (`memory.size`), which is the execution's peak memory use, since
;; wasm memory never shrinks. componentize-py links it like any native
;; extension (`*.cpython-314-wasm32-wasi.so`); the build turns this text into
;; that file with wasmtime's `wat2wasm`, so no wasm C toolchain is needed.
;;
;; Layout (CPython 3.14, wasm32, default build; all fields 4 bytes):
;;   0  PyModuleDef: ob_refcnt, ob_type, m_init, m_index, m_copy,
;;      20 m_name, 24 m_doc, 28 m_size, 32 m_methods, 36 m_slots,
;;      40 m_traverse, 44 m_clear, 48 m_free
;;   52 PyMethodDef[0]: ml_name, ml_meth, ml_flags, ml_doc
;;   68 PyMethodDef[1]: the zeroed sentinel
;;   84 "_ptc_mem\0"   93 "pages\0"
;; Pointers in the data are relative to __memory_base, so PyInit fills them in.
(module
  (@dylink.0 (mem-info (memory 100 2) (table 1 0)))
  (import "env" "memory" (memory 0))
  (import "env" "__indirect_function_table" (table 0 funcref))
  (import "env" "__memory_base" (global $base i32))
  (import "env" "__table_base" (global $table i32))
  (import "env" "PyModule_Create2" (func $create (param i32 i32) (result i32)))
  (import "env" "PyLong_FromLong" (func $long (param i32) (result i32)))

  ;; ob_refcnt 0x50000000: immortal on 32-bit CPython 3.14 (>= 1 << 30).
  (data (global.get $base) "\00\00\00\50\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00_ptc_mem\00pages\00")

  ;; pages() -> int: linear memory size in 64 KiB pages (METH_NOARGS).
  (func $pages (param $self i32) (param $unused i32) (result i32)
    (call $long (memory.size)))
  (elem (global.get $table) func $pages)

  (func (export "PyInit__ptc_mem") (result i32)
    (local $def i32)
    (local.set $def (global.get $base))
    (i32.store offset=20 (local.get $def) (i32.add (local.get $def) (i32.const 84)))  ;; m_name
    (i32.store offset=28 (local.get $def) (i32.const -1))                             ;; m_size
    (i32.store offset=32 (local.get $def) (i32.add (local.get $def) (i32.const 52)))  ;; m_methods
    (i32.store offset=52 (local.get $def) (i32.add (local.get $def) (i32.const 93)))  ;; ml_name
    (i32.store offset=56 (local.get $def) (global.get $table))                        ;; ml_meth
    (i32.store offset=60 (local.get $def) (i32.const 4))                              ;; METH_NOARGS
    (call $create (local.get $def) (i32.const 1013)))                                 ;; PYTHON_API_VERSION
)
