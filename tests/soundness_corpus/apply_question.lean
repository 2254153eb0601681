/- corpus
problem: mini
expect: unsound
scan: sorry
reason: apply?
lean: body=ok axioms=propext,sorryAx type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  apply?
