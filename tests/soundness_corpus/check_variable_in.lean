/- corpus
problem: mini
expect: unsound
scan: scope
layer: scan
reason: leaves a `variable` in scope
lean: body=ok axioms=propext type=changed
-/
variable (hFalse : False) in
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  exact hFalse.elim
