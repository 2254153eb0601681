/- corpus
problem: mini
expect: proved
scan: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
