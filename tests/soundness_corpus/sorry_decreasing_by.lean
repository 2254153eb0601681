/- corpus
problem: mini
expect: unsound
scan: sorry
reason: sorry
lean: body=sorry axioms=propext,sorryAx type=same
-/
def loop (n : ℕ) : ℕ := if n = 0 then 0 else loop (n + 1)
decreasing_by all_goals sorry

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have := loop 3
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
