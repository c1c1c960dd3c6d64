;; evil-alias: a reader plugin whose `on-batch` returns an effect-alias bomb: 5,000 `notify`
;; effects on the topic `evil` whose payloads all name the same 8 MiB of its memory. Copied
;; one by one that is 40 GiB; the host must refuse it (reason `effects`, the byte limit)
;; before copying.
;;
;; Written by hand against the canonical ABI of `wit/` (world `reader`); `tests/build.rs`
;; turns it into a component with `wat` and `wit-component`. It imports nothing.
;;
;; Canonical ABI of the answer, `result<list<effect>, plugin-error>` (align 4): the
;; discriminant (u8, 0 = ok) at +0, the list's pointer at +4 and length at +8. One `effect`
;; (a variant of three cases) is 20 bytes: the discriminant (u8, 2 = notify) at +0, then the
;; `notification` record aligned to 4: topic pointer +4, topic length +8, payload pointer
;; +12, payload length +16.
;;
;; Memory layout: static strings at 16..64, the `streams` list at 64, the topic `evil` at 96,
;; the `describe` answer at 128, a zeroed return area at 256 (an `ok` with an empty payload
;; for every other result type of the interface), `on-batch`'s return area at 512, the effect
;; list at 64 KiB (5,000 x 20 bytes), the 8 MiB payload (zero bytes, valid UTF-8) at 1 MiB,
;; and a bump heap from 10 MiB for `cabi_realloc`.
(module
  (memory (export "memory") 161)
  (global $heap (mut i32) (i32.const 10485760))

  (data (i32.const 16) "evil-alias")
  (data (i32.const 32) "0.1.0")
  (data (i32.const 48) "messages")
  ;; streams: list<string> of one element, (ptr 48, len 8)
  (data (i32.const 64) "\30\00\00\00\08\00\00\00")
  (data (i32.const 96) "evil")
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

  ;; Fills the list with 5,000 `notify("evil", <the 8 MiB at 1 MiB>)` and returns `ok(list)`.
  (func (export "streamhost:plugin/handler@0.1.0#on-batch")
    (param i32 i32 i32 i32 i64 i64 i32 i32) (result i32)
    (local $i i32)
    (local $effect i32)
    (loop $fill
      (local.set $effect (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 20))))
      (i32.store8 (local.get $effect) (i32.const 2))
      (i32.store offset=4 (local.get $effect) (i32.const 96))
      (i32.store offset=8 (local.get $effect) (i32.const 4))
      (i32.store offset=12 (local.get $effect) (i32.const 1048576))
      (i32.store offset=16 (local.get $effect) (i32.const 8388608))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 5000))))
    (i32.store8 (i32.const 512) (i32.const 0))
    (i32.store offset=4 (i32.const 512) (i32.const 65536))
    (i32.store offset=8 (i32.const 512) (i32.const 5000))
    (i32.const 512))

  (func (export "streamhost:plugin/handler@0.1.0#query") (param i32 i32 i32 i32) (result i32)
    (i32.const 256))

  (func (export "streamhost:plugin/handler@0.1.0#snapshot") (result i32)
    (i32.const 256))

  (func (export "streamhost:plugin/handler@0.1.0#restore") (param i32 i32 i32 i32 i32 i32) (result i32)
    (i32.const 256))
)
