/- corpus
problem: mini
expect: unsound
scan: kernel_option
reason: debug.skipKernelTC
-/
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  set_option «debug».«skipKernelTC» true in
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
