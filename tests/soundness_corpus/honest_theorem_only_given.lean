/- corpus
problem: putnam_given
expect: proved
scan: none
lean: body=ok axioms=propext type=same
-/
theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  norm_num [putnam_1999_b2_solution]
