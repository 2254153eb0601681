/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: elaborators
-/
open Lean Elab Tactic in
elab "close_goal" : tactic => do
  let g ← getMainGoal
  Lean.Elab.admitGoal g

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  close_goal
