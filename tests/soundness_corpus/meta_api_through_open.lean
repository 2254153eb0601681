/- corpus
problem: mini
expect: unsound
scan: metaprogram
layer: scan
reason: runs IO or meta code
-/
-- class 3: the meta APIs are flagged however they are reached (here `TermElabM` after `open Lean Elab`)
namespace Helper
  open Lean Elab in
  def go : TermElabM Unit := pure ()
end Helper

theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
