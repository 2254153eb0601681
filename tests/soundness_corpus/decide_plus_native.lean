/- corpus
problem: mini
expect: unsound
scan: native
reason: decide +native
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have : (2 : ℕ) ^ 2 = 4 := by decide +native
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
