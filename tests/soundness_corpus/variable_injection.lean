/- corpus
problem: mini
expect: unsound
scan: scope
reason: elaborated type differs
lean: body=ok axioms=propext type=changed
-/
variable (hFalse : False)
include hFalse

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  exact hFalse.elim
