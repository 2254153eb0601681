/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: macros
-/
macro "finish_it" : tactic => `(tactic| sorry)

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  finish_it
