/- corpus
problem: mini
expect: unsound
scan: kernel_option
layer: scan
reason: debug.skipKernelTC
-/
-- class 2: Lean skips the character after `/-` unread, so `/-/-` opens ONE comment, which ends at the first
-- `-/`: the set_option below is code, though a naive nested-comment reader sees it inside a comment
/-/- setup -/ set_option debug.skipKernelTC true -- -/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
