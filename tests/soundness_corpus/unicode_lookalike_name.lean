/- corpus
problem: mini
expect: unsound
scan: none
reason: not declared at top level
lean: body=ok axioms=propext type=same check=unknown
-/
theorem mathd_аlgebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) (h₁ : x = 2) : x ^ 2 = 4 := by
  subst h₁
  norm_num
