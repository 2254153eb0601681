/- corpus
problem: mini
expect: proved
scan: none
layer: type
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=renamed
-/
-- class 7: `Real` for `ℝ`, `√` for `Real.sqrt` and other hypothesis/variable names elaborate to the same type
theorem mathd_algebra_10 (y : Real) (hy : y = √4) : y ^ 2 = 4 := by
  subst hy
  rw [Real.sq_sqrt] <;> norm_num
