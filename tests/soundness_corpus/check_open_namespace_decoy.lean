/- corpus
problem: mini
expect: unsound
scan: scope
layer: scan
reason: leaves a `namespace` open
lean: body=ok axioms=propext,sorryAx type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  exact (by exact?)

-- class 1: the check used to run inside this namespace, where `mathd_algebra_10` is the decoy below
namespace Decoy
theorem mathd_algebra_10 : True := trivial
