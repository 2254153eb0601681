/- corpus
problem: mini
expect: proved
scan: none
layer: none
lean: body=ok axioms=propext,Classical.choice,Quot.sound type=same
-/
import Mathlib
import Aesop

set_option maxHeartbeats 400000

open BigOperators Real Nat Topology Rat

/-- A helper in the style of DeepSeek-Prover / Kimina outputs. We never use sorry or add axioms. -/
lemma helper_bound (n : ℕ) (h₁ : n < 4) (h₂ : 1 < n) : n = 2 ∨ n = 3 := by
  interval_cases n <;> simp_all

open Finset in
set_option linter.unusedVariables false in
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  -- Step 1: √4 = 2 (the word `sorry` in a comment is not code; nor is `axiom`)
  have h₁ : Real.sqrt 4 = 2 := by
    rw [show (4 : ℝ) = 2 ^ 2 by norm_num]
    exact Real.sqrt_sq (by norm_num)
  have h₂ : x = 2 := by rw [h₀, h₁]
  have h₃ : x ^ 2 = 2 ^ 2 := by rw [h₂]
  have h₄ : (0 : ℝ) ≤ x := by nlinarith [Real.sqrt_nonneg 4, sq_nonneg (x - 2), h₂]
  have h₅ : x ^ 2 = 4 := by
    calc x ^ 2 = 2 ^ 2 := h₃
      _ = 4 := by norm_num
  norm_num [h₂] at h₅ ⊢
