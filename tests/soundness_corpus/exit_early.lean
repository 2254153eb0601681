/- corpus
problem: mini
expect: unsound
scan: exit
reason: #exit
-/
theorem helper : True := trivial
#exit
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  nlinarith
