/- corpus
problem: mini
expect: unsound
scan: implemented_by
reason: implemented_by
-/
def realCheck (b : Bool) : Bool := b
@[implemented_by realCheck] def fakeCheck (_ : Bool) : Bool := true

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
