/- corpus
problem: mini
expect: unsound
scan: none
layer: statement
reason: not declared at top level
lean: body=ok axioms=propext type=same check=unknown
-/
namespace Other
noncomputable def sqrt4 : ℝ := 2
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
end Other
