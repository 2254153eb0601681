/- corpus
problem: mini
expect: proved
scan: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
import Mathlib
import Aesop

set_option maxHeartbeats 400000

open BigOperators Real Nat Topology Rat

-- A helper; the word sorry in this comment, /- and sorry in /- nested -/ comments -/, must not count.
lemma four_sq (y : ℝ) (hy : y = 2) : y ^ 2 = 4 := by
  have h_unsafe_free : "sorry" = "sorry" := rfl
  subst hy
  norm_num [Nat.reduceMul]

set_option maxHeartbeats 400000 in
/-- The docstring may say `sorry`, `native_decide` or `axiom` freely. -/
lemma   mathd_algebra_10 (x : ℝ)
    (h₀ : x = Real.sqrt 4) :   x ^ 2 = 4 := by
  have hx : x = 2 := by
    rw [h₀, show (4 : ℝ) = 2 ^ 2 by norm_num, Real.sqrt_sq] <;> norm_num
  simp_all (config := {decide := true})
  exact four_sq x hx
