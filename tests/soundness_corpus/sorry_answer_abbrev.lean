/- corpus
problem: putnam
expect: unsound
scan: sorry
reason: sorry
lean: body=sorry axioms=propext,sorryAx type=same
-/
abbrev putnam_1999_b2_solution : ℕ := sorry

theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by
  rfl
