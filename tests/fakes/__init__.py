"""Fakes for what cannot exist here (Lean, LeanDojo's Lean process); each says so."""
