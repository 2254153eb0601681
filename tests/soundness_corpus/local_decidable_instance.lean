/- corpus
problem: mini
expect: unsound
scan: sorry
reason: sorry
lean: body=sorry axioms=propext,sorryAx type=same
-/
local instance cheatDec : DecidableEq ℝ := fun _ _ => isTrue sorry

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  decide
