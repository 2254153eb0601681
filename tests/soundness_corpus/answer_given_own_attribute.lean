/- corpus
problem: putnam_given
expect: unsound
scan: none
layer: answers
reason: declares its own `putnam_1999_b2_solution`
lean: body=ok axioms=propext type=same
-/
-- class 5: with the answer given, the verifier places the recorded abbrev itself; a proof's own (here a
-- `def`, which unfolds differently) is refused
def putnam_1999_b2_solution : ℕ := 6

theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  rfl
