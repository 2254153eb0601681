/- corpus
problem: mini
expect: proved
scan: none
layer: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
open Real in theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  rw [h₀, sq_sqrt (by norm_num : (0:ℝ) ≤ 4)]
