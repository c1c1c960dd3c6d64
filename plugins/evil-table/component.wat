;; evil-table: a reader plugin that grows a Wasm table without bound in `on-batch`.
;;
;; Stable Rust cannot emit `table.grow` on wasm32-wasip2, so this plugin is a core module
;; written by hand against the canonical ABI of `wit/` (world `reader`); `tests/build.rs`
;; turns it into a component with `wat` and `wit-component`. It imports nothing.
;;
;; Memory layout: static strings at 16..64, the `streams` list at 64, the `describe`
;; answer at 128, a zeroed return area at 256 (an `ok` with an empty payload for every
;; result type of the interface), and a bump heap from 4096 for `cabi_realloc`.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 4096))

  (data (i32.const 16) "evil-table")
  (data (i32.const 32) "0.1.0")
  (data (i32.const 48) "messages")
  ;; streams: list<string> of one element, (ptr 48, len 8)
  (data (i32.const 64) "\30\00\00\00\08\00\00\00")
  ;; description { name (16, 10), version (32, 5), streams (64, 1), queries (0, 0), snapshots false }
  (data (i32.const 128)
    "\10\00\00\00\0a\00\00\00\20\00\00\00\05\00\00\00\40\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00\00")

  ;; A bump allocator: aligns, grows memory when needed, never frees.
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (br_if $fits
        (i32.ne
          (memory.grow
            (i32.add
              (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536))
              (i32.const 1)))
          (i32.const -1)))
      unreachable)
    (local.get $p))

  (func (export "streamhost:plugin/handler@0.1.0#describe") (result i32)
    (i32.const 128))

  (func (export "streamhost:plugin/handler@0.1.0#init") (param i32 i32 i32 i32) (result i32)
    (i32.const 256))

  ;; Grows the table by 65,536 elements at a time until growing fails, then traps.
  (func (export "streamhost:plugin/handler@0.1.0#on-batch")
    (param i32 i32 i32 i32 i64 i64 i32 i32) (result i32)
    (loop $grow
      (br_if $grow
        (i32.ne (table.grow $t (ref.null func) (i32.const 65536)) (i32.const -1))))
    unreachable)

  (func (export "streamhost:plugin/handler@0.1.0#query") (param i32 i32 i32 i32) (result i32)
    (i32.const 256))

  (func (export "streamhost:plugin/handler@0.1.0#snapshot") (result i32)
    (i32.const 256))

  (func (export "streamhost:plugin/handler@0.1.0#restore") (param i32 i32 i32 i32 i32 i32) (result i32)
    (i32.const 256))
)
