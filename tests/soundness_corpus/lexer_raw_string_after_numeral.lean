/- corpus
problem: mini
expect: unsound
scan: native
layer: scan
reason: native_decide
-/
-- class 2: after a numeral `r"…"` is a raw string (no escapes): `r"\"` ends at its second quote, so
-- native_decide is code; read as a plain string it would run on to the last quote
theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by
  have _h := (2r"\", native_decide, "")
  subst h₀
  rw [Real.sq_sqrt] <;> norm_num
