/- corpus
problem: mini
expect: unsound
scan: redefinition
layer: scan
reason: redefines `Real.sqrt`
lean: body=ok axioms=propext type=changed
-/
-- class 4: declarations count at any column
namespace Cheat
  noncomputable def Real.sqrt (_ : ℝ) : ℝ := 2
end Cheat

open Cheat in
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  norm_num [Cheat.Real.sqrt]
