/- corpus
problem: mini
expect: unsound
scan: none
layer: type
reason: printed in part (`⋯`)
lean: body=ok axioms=propext type=elided
-/
-- The statement is repeated word for word, but the instance changes what its last part means. In a statement long
-- enough that `pp.maxSteps` (5000 by default) cuts the printed type before that part, the proof's type and the
-- problem's print alike (`… ⋯`); the verifier took that as the same statement whenever the text was unchanged.
local instance : OfNat ℝ 4 := ⟨Real.sqrt 4 ^ 2⟩

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rfl
