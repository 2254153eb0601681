/- corpus
problem: mini
expect: unsound
scan: metaprogram
reason: meta code
-/
open Lean Elab Command in
run_cmd liftTermElabM do
  let ty ← Meta.inferType (mkConst ``True.intro)
  pure ()

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
