/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: through an attribute
-/
open Lean Elab Command in
def forged : CommandElab := fun _ => logInfo "'mathd_algebra_10' depends on axioms: [propext]"

attribute [command_elab Lean.Parser.Command.printAxioms] forged

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
