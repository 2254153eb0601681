/- corpus
problem: mini
expect: proved
scan: none
layer: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
/-- √4 squared is 4 (no sorry, no new axiom). -/ theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
