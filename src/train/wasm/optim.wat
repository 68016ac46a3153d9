;; ffwd's optimizer update rules, float32 SIMD: the arithmetic of torch.optim's single-tensor
;; SGD, RMSprop and Adam/AdamW (PyTorch 1.13, float32 parameters), four elements at a time.
;;
;; Arrays are float32 at byte offsets into the exported memory, each padded to a multiple of 16
;; bytes: a call processes ceil(n / 4) * 4 elements, and the padding lanes (never read back)
;; compute whatever they compute, independently of the real ones.
;;
;; Built into optim_wasm.ts by `deno task gen:wasm` (wabt); a test checks that the two agree.
(module
  (memory (export "memory") 0)

  ;; d = g * gs + wd * p;  with momentum: buf = first ? d : mu * buf + damp1 * d,
  ;; d = nesterov ? d + mu * buf : buf;  p = p - lr * d
  (func (export "sgd")
    (param $p i32) (param $g i32) (param $buf i32) (param $n i32)
    (param $lr f32) (param $wd f32) (param $mu f32) (param $damp1 f32) (param $gs f32)
    (param $nesterov i32) (param $first i32)
    (local $i i32) (local $end i32) (local $momentum i32)
    (local $vlr v128) (local $vwd v128) (local $vmu v128) (local $vdamp1 v128) (local $vgs v128)
    (local $pi v128) (local $d v128) (local $b v128)
    (local.set $vlr (f32x4.splat (local.get $lr)))
    (local.set $vwd (f32x4.splat (local.get $wd)))
    (local.set $vmu (f32x4.splat (local.get $mu)))
    (local.set $vdamp1 (f32x4.splat (local.get $damp1)))
    (local.set $vgs (f32x4.splat (local.get $gs)))
    (local.set $momentum (f32.ne (local.get $mu) (f32.const 0)))
    (local.set $end (i32.and (i32.add (i32.shl (local.get $n) (i32.const 2)) (i32.const 15))
                             (i32.const -16)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $pi (v128.load (i32.add (local.get $p) (local.get $i))))
        (local.set $d
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (local.get $vgs))
            (f32x4.mul (local.get $vwd) (local.get $pi))))
        (if (local.get $momentum)
          (then
            (if (local.get $first)
              (then (local.set $b (local.get $d)))
              (else
                (local.set $b
                  (f32x4.add
                    (f32x4.mul (local.get $vmu) (v128.load (i32.add (local.get $buf) (local.get $i))))
                    (f32x4.mul (local.get $vdamp1) (local.get $d))))))
            (v128.store (i32.add (local.get $buf) (local.get $i)) (local.get $b))
            (if (local.get $nesterov)
              (then (local.set $d (f32x4.add (local.get $d) (f32x4.mul (local.get $vmu) (local.get $b)))))
              (else (local.set $d (local.get $b))))))
        (v128.store (i32.add (local.get $p) (local.get $i))
          (f32x4.sub (local.get $pi) (f32x4.mul (local.get $vlr) (local.get $d))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; d = g * gs + wd * p;  sq = alpha * sq + c * d * d
  ;; (c = 1 - alpha, rounded once, as torch rounds the scalar it is given);
  ;; centered: ga = alpha * ga + c * d, avg = sqrt(sq - ga * ga) + eps;
  ;; else avg = sqrt(sq) + eps;  with momentum: mom = mu * mom + d / avg, p = p - lr * mom;
  ;; else p = p - lr * (d / avg)
  (func (export "rmsprop")
    (param $p i32) (param $g i32) (param $sq i32) (param $ga i32) (param $mom i32) (param $n i32)
    (param $lr f32) (param $wd f32) (param $alpha f32) (param $c f32) (param $eps f32)
    (param $mu f32) (param $gs f32) (param $centered i32)
    (local $i i32) (local $end i32) (local $momentum i32)
    (local $vlr v128) (local $vwd v128) (local $valpha v128) (local $vc v128) (local $veps v128)
    (local $vmu v128) (local $vgs v128)
    (local $pi v128) (local $d v128) (local $s v128) (local $a v128) (local $avg v128)
    (local $q v128)
    (local.set $vlr (f32x4.splat (local.get $lr)))
    (local.set $vwd (f32x4.splat (local.get $wd)))
    (local.set $valpha (f32x4.splat (local.get $alpha)))
    (local.set $vc (f32x4.splat (local.get $c)))
    (local.set $veps (f32x4.splat (local.get $eps)))
    (local.set $vmu (f32x4.splat (local.get $mu)))
    (local.set $vgs (f32x4.splat (local.get $gs)))
    (local.set $momentum (f32.gt (local.get $mu) (f32.const 0)))
    (local.set $end (i32.and (i32.add (i32.shl (local.get $n) (i32.const 2)) (i32.const 15))
                             (i32.const -16)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $pi (v128.load (i32.add (local.get $p) (local.get $i))))
        (local.set $d
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (local.get $vgs))
            (f32x4.mul (local.get $vwd) (local.get $pi))))
        (local.set $s
          (f32x4.add
            (f32x4.mul (local.get $valpha) (v128.load (i32.add (local.get $sq) (local.get $i))))
            (f32x4.mul (f32x4.mul (local.get $vc) (local.get $d)) (local.get $d))))
        (v128.store (i32.add (local.get $sq) (local.get $i)) (local.get $s))
        (if (local.get $centered)
          (then
            (local.set $a
              (f32x4.add
                (f32x4.mul (local.get $valpha) (v128.load (i32.add (local.get $ga) (local.get $i))))
                (f32x4.mul (local.get $vc) (local.get $d))))
            (v128.store (i32.add (local.get $ga) (local.get $i)) (local.get $a))
            (local.set $avg
              (f32x4.add
                (f32x4.sqrt (f32x4.sub (local.get $s) (f32x4.mul (local.get $a) (local.get $a))))
                (local.get $veps))))
          (else
            (local.set $avg (f32x4.add (f32x4.sqrt (local.get $s)) (local.get $veps)))))
        (local.set $q (f32x4.div (local.get $d) (local.get $avg)))
        (if (local.get $momentum)
          (then
            (local.set $q
              (f32x4.add
                (f32x4.mul (local.get $vmu) (v128.load (i32.add (local.get $mom) (local.get $i))))
                (local.get $q)))
            (v128.store (i32.add (local.get $mom) (local.get $i)) (local.get $q))))
        (v128.store (i32.add (local.get $p) (local.get $i))
          (f32x4.sub (local.get $pi) (f32x4.mul (local.get $vlr) (local.get $q))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; p = p * shrink (AdamW's decoupled decay);  d = g * gs + l2 * p (Adam's L2);
  ;; m = b1 * m + c1 * d;  v = b2 * v + c2 * d * d  (c1 = 1 - b1, c2 = 1 - b2, rounded once);
  ;; p = p - stepSize * (m / (sqrt(v) / bc2Sqrt + eps))
  (func (export "adam")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $stepSize f32) (param $bc2Sqrt f32) (param $eps f32) (param $shrink f32)
    (param $l2 f32) (param $b1 f32) (param $b2 f32) (param $c1 f32) (param $c2 f32)
    (param $gs f32)
    (local $i i32) (local $end i32)
    (local $vstep v128) (local $vbc2 v128) (local $veps v128) (local $vshrink v128)
    (local $vl2 v128) (local $vb1 v128) (local $vb2 v128) (local $vc1 v128) (local $vc2 v128)
    (local $vgs v128)
    (local $pi v128) (local $d v128) (local $mi v128) (local $vi v128)
    (local.set $vstep (f32x4.splat (local.get $stepSize)))
    (local.set $vbc2 (f32x4.splat (local.get $bc2Sqrt)))
    (local.set $veps (f32x4.splat (local.get $eps)))
    (local.set $vshrink (f32x4.splat (local.get $shrink)))
    (local.set $vl2 (f32x4.splat (local.get $l2)))
    (local.set $vb1 (f32x4.splat (local.get $b1)))
    (local.set $vb2 (f32x4.splat (local.get $b2)))
    (local.set $vc1 (f32x4.splat (local.get $c1)))
    (local.set $vc2 (f32x4.splat (local.get $c2)))
    (local.set $vgs (f32x4.splat (local.get $gs)))
    (local.set $end (i32.and (i32.add (i32.shl (local.get $n) (i32.const 2)) (i32.const 15))
                             (i32.const -16)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $pi
          (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $i))) (local.get $vshrink)))
        (local.set $d
          (f32x4.add
            (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (local.get $vgs))
            (f32x4.mul (local.get $vl2) (local.get $pi))))
        (local.set $mi
          (f32x4.add
            (f32x4.mul (local.get $vb1) (v128.load (i32.add (local.get $m) (local.get $i))))
            (f32x4.mul (local.get $vc1) (local.get $d))))
        (local.set $vi
          (f32x4.add
            (f32x4.mul (local.get $vb2) (v128.load (i32.add (local.get $v) (local.get $i))))
            (f32x4.mul (f32x4.mul (local.get $vc2) (local.get $d)) (local.get $d))))
        (v128.store (i32.add (local.get $m) (local.get $i)) (local.get $mi))
        (v128.store (i32.add (local.get $v) (local.get $i)) (local.get $vi))
        (v128.store (i32.add (local.get $p) (local.get $i))
          (f32x4.sub (local.get $pi)
            (f32x4.mul (local.get $vstep)
              (f32x4.div (local.get $mi)
                (f32x4.add (f32x4.div (f32x4.sqrt (local.get $vi)) (local.get $vbc2))
                           (local.get $veps))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))))
