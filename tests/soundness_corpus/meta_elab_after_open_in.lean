/- corpus
problem: mini
expect: unsound
scan: metaprogram
layer: scan
reason: defines syntax, macros
-/
-- class 3: a command keyword is a token wherever it stands, not only at the start of a line
open Lean Elab Tactic in elab "finish" : tactic => do evalTactic (← `(tactic| exact sorryAx _ false))

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  finish
