/- corpus
problem: mini
expect: failed
scan: none
layer: messages
reason: error
lean: body=error
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  linarith
