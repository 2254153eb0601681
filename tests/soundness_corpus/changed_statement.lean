/- corpus
problem: mini
expect: unsound
scan: none
layer: type
reason: statement of `mathd_algebra_10` was changed
lean: body=ok axioms=propext type=changed
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) (h₁ : x = 2) : x ^ 2 = 4 := by
  subst h₁
  norm_num
