/- corpus
problem: mini
expect: unsound
scan: scope
layer: scan
reason: `#guard_msgs`
lean: body=ok axioms=propext,sorryAx type=same
-/
/-- error: unsolved goals
x : ℝ
h₀ : x = √4
⊢ x ^ 2 = 4 -/
#guard_msgs in
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  skip
