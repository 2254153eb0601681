/- corpus
problem: putnam
expect: proved
scan: none
lean: body=ok axioms=propext type=same
-/
abbrev putnam_1999_b2_solution : ℕ := 6

theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  rfl
