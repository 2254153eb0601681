/- corpus
problem: mini
expect: unsound
scan: none
layer: axioms
reason: gave 2 answers, not exactly one
lean: body=ok axioms=propext answers=2 type=same
-/
-- class 1: whatever makes the check print two `#print axioms` answers (the fake REPL does), the verdict
-- must not pick one of them
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
