/- corpus
problem: mini
expect: unsound
scan: unsafe
reason: unsafe
-/
unsafe def coerce (p : Prop) : p := unsafeCast ()

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
