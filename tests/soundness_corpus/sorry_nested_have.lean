/- corpus
problem: mini
expect: unsound
scan: sorry
reason: sorry
lean: body=sorry axioms=propext,sorryAx type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have h : x = 2 := by
    have h' : Real.sqrt 4 = 2 := by
      have h'' : (4 : ℝ) = 2 ^ 2 := by norm_num
      sorry
    rw [h₀, h']
  rw [h]; norm_num
