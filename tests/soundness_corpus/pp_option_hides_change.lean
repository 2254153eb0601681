/- corpus
problem: mini
expect: unsound
scan: kernel_option
reason: pp.notation
-/
set_option pp.notation true
set_option pp.explicit false
local instance weirdPow : HPow ℝ ℕ ℝ := ⟨fun _ _ => 4⟩

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  rfl
