/- corpus
problem: mini
expect: unsound
scan: none
layer: protocol
reason: not its answer to the proof
lean: body=forged axioms=propext type=same
-/
-- class 6: a proof that writes a well-formed answer to the REPL's stdout (the fake REPL sends it before its
-- own answer): the output that is not the answer to this command fails this proof
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
