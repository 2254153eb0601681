/- corpus
problem: mini
expect: unsound
scan: native
reason: compiler
-/
open Lean in
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have : reduceBool (Nat.ble 2 3) = true := rfl
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
