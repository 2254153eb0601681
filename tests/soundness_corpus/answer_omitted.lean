/- corpus
problem: putnam
expect: unsound
scan: none
reason: sorry
lean: body=sorry axioms=sorryAx type=same
-/
theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  rfl
