/- corpus
problem: mini
expect: unsound
scan: native
layer: scan
reason: native_decide
-/
-- class 2: the {…} parts of an interpolated string are code
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have _h : s!"{(by native_decide : 2 + 2 = 4)}".length > 0 := by decide
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
