/- corpus
problem: mini
expect: unsound
scan: sorry
reason: sorryAx
lean: body=ok axioms=propext,sorryAx type=same
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have : s!"{(sorry : x ^ 2 = 4)}".length ≥ 0 := Nat.zero_le _
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
