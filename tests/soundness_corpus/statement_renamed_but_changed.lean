/- corpus
problem: mini
expect: unsound
scan: none
layer: type
reason: was changed (and its elaborated type differs)
lean: body=ok axioms=propext type=changed
-/
-- class 7 (the other side): a statement that differs as text is judged by its elaborated type, which differs here
theorem mathd_algebra_10 (x : Real) (h : x = Real.sqrt 4) : x ^ 2 = 4 ∨ False := by
  subst h
  left
  rw [Real.sq_sqrt] <;> norm_num
