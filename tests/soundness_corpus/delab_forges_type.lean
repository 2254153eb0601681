/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: through an attribute
-/
local notation "ℝ" => ℚ

open Lean PrettyPrinter Delaborator in
@[delab const.Rat] def asReal : Delab := pure (mkIdent `Real)

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  norm_num [h₀]
