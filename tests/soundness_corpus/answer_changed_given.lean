/- corpus
problem: putnam_given
expect: unsound
scan: none
reason: value of `putnam_1999_b2_solution` was changed
lean: body=ok axioms=propext type=same
-/
abbrev putnam_1999_b2_solution : ℕ := 3 * 2

theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  rfl
