/- corpus
problem: mini
expect: unsound
scan: none
layer: axioms
reason: answered about `Decoy.mathd_algebra_10`
lean: body=ok axioms=propext about=Decoy.mathd_algebra_10 type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  exact (by exact?)

namespace Decoy
theorem mathd_algebra_10 : True := trivial
end Decoy

-- class 1: after `open Decoy` an unqualified `#print axioms mathd_algebra_10` would be ambiguous; the fake
-- REPL answers about the decoy, as a check that is not pinned with `_root_` could
open Decoy
