/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: manipulates the environment
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  run_tac do
    Lean.addDecl (.axiomDecl { name := `cheat, levelParams := [], type := mkConst ``False, isUnsafe := false })
