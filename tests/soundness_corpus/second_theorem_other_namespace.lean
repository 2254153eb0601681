/- corpus
problem: mini
expect: unsound
scan: sorry
reason: sorry
lean: body=sorry axioms=propext,sorryAx type=same
-/
namespace Decoy
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
end Decoy

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  sorry
