/- corpus
problem: mini
expect: unsound
scan: inductive
reason: new inductive type
lean: body=ok axioms=propext type=same
-/
inductive Weird : Prop where
  | mk (b : Bool)

structure Box where
  val : ℝ

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
