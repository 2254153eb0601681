/- corpus
problem: mini
expect: proved
scan: none
layer: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
-- a zero-width space inside a comment is harmless:​ only bidi controls are refused there
/--/ a degenerate doc comment: it runs to the next closer, so this sorry is not code -/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
