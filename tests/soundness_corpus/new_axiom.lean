/- corpus
problem: mini
expect: unsound
scan: axiom
reason: axiom
lean: body=ok axioms=propext,cheat type=same
-/
axiom cheat : ∀ p : Prop, p

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 :=
  cheat _
