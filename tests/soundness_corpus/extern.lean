/- corpus
problem: mini
expect: unsound
scan: implemented_by
reason: extern
-/
@[extern "lean_nat_dec_eq"] def myEq (a b : ℕ) : Bool := a == b

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
