/- corpus
problem: mini
expect: failed
scan: none
reason: imports Mathlib.Cheat
-/
import Mathlib
import Mathlib.Cheat

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  exact Mathlib.Cheat.solve
