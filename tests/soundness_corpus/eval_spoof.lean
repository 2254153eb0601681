/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: #eval
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  sorry
#eval IO.println "'mathd_algebra_10' depends on axioms: [propext]"
